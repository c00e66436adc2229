// warren-bench: prints `METRIC <name> <value> <unit>` lines for Warren's figures.
//   warren-bench core       flow engine (in-process, one core)
// Record results in Docs/benchmarks.md with the command that produced them.

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "core":
    CoreBench.run()
default:
    print("usage: warren-bench core")
    exit(arguments.isEmpty ? 0 : 2)
}
