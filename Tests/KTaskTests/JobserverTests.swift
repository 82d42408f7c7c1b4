import Testing
@testable import KTask

/// MAKEFLAGS as GNU make writes it for a recipe, in each form the manual describes.
@Suite("Jobserver: MAKEFLAGS")
struct JobserverTests {
    @Test("the jobserver forms: auth and the older fds, pipe descriptors and fifo, the last one winning", arguments: [
        (" -j4 --jobserver-auth=3,4", Jobserver.Auth.pipe(read: 3, write: 4)),
        (" --jobserver-fds=3,4 -j", Jobserver.Auth.pipe(read: 3, write: 4)),
        ("-j4 --jobserver-auth=fifo:/tmp/GMfifo123", Jobserver.Auth.fifo("/tmp/GMfifo123")),
        (" --jobserver-auth=5,6 --jobserver-auth=fifo:/tmp/GMfifo9", Jobserver.Auth.fifo("/tmp/GMfifo9")),
        (" --jobserver-auth=fifo:/tmp/x --jobserver-auth=7,8", Jobserver.Auth.pipe(read: 7, write: 8)),
    ])
    func forms(makeflags: String, expected: Jobserver.Auth) {
        #expect(Jobserver.parse(makeflags: makeflags).auth == expected)
    }

    @Test("no jobserver: none named, negative descriptors, garbage, a last option that is unusable", arguments: [
        "", "-j4", " -j --jobserver-auth=-2,-2", " --jobserver-auth=3", " --jobserver-auth=a,b", " --jobserver-auth=fifo:",
        " --jobserver-auth=3,4 --jobserver-auth=-1,-1", "--jobserver-auth=3,4,5",
    ])
    func none(makeflags: String) {
        #expect(Jobserver.parse(makeflags: makeflags).auth == nil)
    }

    @Test("n in the first word is a dry run, and the jobserver is read all the same")
    func dryRun() {
        let parsed = Jobserver.parse(makeflags: "kn -j2 --jobserver-auth=3,4")
        #expect(parsed.dryRun && parsed.auth == .pipe(read: 3, write: 4))
        #expect(!Jobserver.parse(makeflags: " -j2 --jobserver-auth=3,4").dryRun)
        #expect(!Jobserver.parse(makeflags: "k -j2").dryRun)
    }
}
