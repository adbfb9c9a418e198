import CFuzzerDriver
import Foundation

// tickfuzz TARGET [libFuzzer flags] [corpus directories or inputs]: one target's fuzzing loop (or, with inputs and
// -runs=0, each input once: the regression run). tickfuzz seeds DIRECTORY writes every target's seed corpus.
func complain(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

let usage = "usage: tickfuzz TARGET [libFuzzer flags] [CORPUS...] | tickfuzz seeds DIRECTORY | tickfuzz list\n"
let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    complain(usage + "targets: \(FuzzTarget.all.map(\.name).joined(separator: " "))\n")
    exit(2)
}
switch arguments[1] {
case "list":
    for target in FuzzTarget.all { print("\(target.name)\t\(target.about)") }
    exit(0)
case "seeds":
    guard arguments.count == 3 else {
        complain(usage)
        exit(2)
    }
    exit(Seeds.write(into: arguments[2]) ? 0 : 1)
default:
    guard let target = FuzzTarget.all.first(where: { $0.name == arguments[1] }) else {
        complain("tickfuzz: no target \"\(arguments[1])\"\n" + usage)
        exit(2)
    }
    FuzzTarget.chosen = target
    // libFuzzer reads its flags from argv[1...]: the target's name is taken out, the program's name kept.
    var argc = CommandLine.argc - 1
    var vector: [UnsafeMutablePointer<CChar>?] = [CommandLine.unsafeArgv[0]]
    for index in 2..<Int(CommandLine.argc) { vector.append(CommandLine.unsafeArgv[index]) }
    vector.append(nil)
    let status = vector.withUnsafeMutableBufferPointer { buffer in
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
        return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            FuzzTarget.chosen?.run(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        }
    }
    exit(status)
}
