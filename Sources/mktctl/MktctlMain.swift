import Operations

/// The `mktctl` executable: all of its logic lives in Operations, where tests can run it in-process.
@main
enum MktctlMain {
    static func main() async {
        await Mktctl.main()
    }
}
