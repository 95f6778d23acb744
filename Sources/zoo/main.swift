import Foundation
import ZooCore

// Get OpenBLAS's fast kernels before anything else runs (may re-execute this program once).
Runtime.ensureFastBLAS()
Runtime.configureAllocator()
Runtime.dieWithParent()
Interrupt.install()

let commands: [Command.Type] = [
    ListCommand.self, EvalCommand.self, EmbedCommand.self, TokenizeCommand.self, ScoreCommand.self,
    FinetuneCommand.self, BenchCommand.self, PeakCommand.self, WeightsCommand.self, DataCommand.self, TableCommand.self, SearchCommand.self, StudyCommand.self,
] + registry.commands

func usage() -> String {
    var s = "zoo — BERT compression model zoo: variants measured on GLUE by parameters, speed and score.\n\nUsage: zoo <command> [options]   (zoo <command> --help for details)\n\nCommands:\n"
    for c in commands { s += "  " + c.name.padding(toLength: 10, withPad: " ", startingAt: 0) + c.summary + "\n" }
    s += "\nEnvironment: ZOO_GLUE_DIR (GLUE data), ZOO_WEIGHTS (default --weights), ZOO_THREADS, ZOO_CACHE,\n  ZOO_SIMD=generic|avx2|avx512 (kernels of a lower SIMD level than the CPU's best, for comparisons).\n"
    return s
}

let argv = Array(CommandLine.arguments.dropFirst())
guard let first = argv.first else {
    FileHandle.standardError.write(Data(usage().utf8))
    exit(2)
}
if ["--help", "-h", "help"].contains(first) {
    print(usage(), terminator: "")
    exit(0)
}
guard let command = commands.first(where: { $0.name == first }) else {
    FileHandle.standardError.write(Data("zoo: unknown command '\(first)'\n\n\(usage())".utf8))
    exit(2)
}
let rest = Array(argv.dropFirst())
if rest.contains("--help") || rest.contains("-h") {
    print(command.help)
    exit(0)
}
do {
    try Runtime.checkSIMDSetting()
    try command.run(try Arguments(rest, options: command.options, flags: command.flags))
} catch let e as ZooError {
    FileHandle.standardError.write(Data("zoo \(command.name): \(e.description)\n".utf8))
    if e.exitCode == 2 { FileHandle.standardError.write(Data("usage: \(command.help.split(separator: "\n").first ?? "")\n".utf8)) }
    exit(e.exitCode)
} catch {
    FileHandle.standardError.write(Data("zoo \(command.name): \(error)\n".utf8))
    exit(1)
}
