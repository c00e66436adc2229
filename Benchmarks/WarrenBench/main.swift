// warren-bench: prints `METRIC <name> <value> <unit>` lines for Warren's figures.
//   warren-bench core       flow engine (in-process, one core)
//   warren-bench datapath   real frames VM→VM: kernel bridge vs Warren bridge/router (root)
//   warren-bench vpn        VPN setup, failover, scale and throughput (root; VPNBench.swift)
//   warren-bench rpc        JSON-RPC requests/s and latency over the Unix socket (RPCBench.swift)
// Record results in Docs/benchmarks.md with the command that produced them.

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "core":
    CoreBench.run()
case "datapath": exit(DatapathBench.run(Array(arguments.dropFirst())))
case "vpn": exit(VPNBench.run(Array(arguments.dropFirst())))
case "rpc": exit(RPCBench.run(Array(arguments.dropFirst())))
default:
    print("usage: warren-bench core | warren-bench datapath [options] | warren-bench vpn [phases] [options]  (warren-bench vpn --help) | warren-bench rpc [options]")
    exit(arguments.isEmpty ? 0 : 2)
}
