// CharonInstanceConfig.swift — strongswan.conf for one charon per IPsec instance.
//
// What: renders the complete strongswan.conf of one instance directory DIR (charon reads
// it via STRONGSWAN_CONF=DIR/strongswan.conf; nothing from /etc/strongswan.d is included),
// with a comment above each setting giving its reason. Two kernel backends:
// - `.libipsec` (default; the only one that works on kernels without ESP): ESP in
//   userspace over a TUN device `ipsecN`.
// - `.xfrm`: kernel ESP through kernel-netlink, for hosts that have it (route-based with
//   XFRM interfaces selected by the CHILD_SA's if_id_in/out). NOT exercised by tests on
//   these machines (no kernel ESP here); it is rendered from the strongSwan docs.
//
// Invariants:
// - No secret is ever rendered: PSKs are loaded over vici only.
// - The vici socket is DIR/charon.vici and the log DIR/charon.log. DIR must be an
//   absolute path of [A-Za-z0-9/._-] (it is embedded in this file and in a shell command
//   line), the socket path must fit sun_path (107 bytes), and DIR must not be under /run:
//   charon runs in a private mount namespace with DIR bind-mounted on /run (its pid file
//   path /run/charon.pid is compiled in), which would hide a DIR below /run.
// - charon's routing table (where kernel-libipsec always puts `0.0.0.0/0 dev ipsecN`) is a
//   private table reached only by an fwmark rule for a mark nothing sets, so that route
//   is never consulted; routing into the tunnel is decided by the main table.
//
// Threading: values, `Sendable`.

/// Settings of one charon instance, and its rendered strongswan.conf.
public struct CharonInstanceConfig: Sendable, Hashable {
    /// How ESP is done.
    public enum KernelBackend: String, Sendable, Hashable {
        /// Userspace ESP over a TUN device (kernel-libipsec). Works without kernel ESP.
        case libipsec
        /// Kernel ESP via XFRM (kernel-netlink), route-based with XFRM interfaces.
        case xfrm
    }

    /// Plugins needed with kernel-libipsec and PSK authentication — the minimal set,
    /// measured on strongSwan 5.9.8: each one removed breaks IKEv1 or IKEv2 with
    /// aes128-sha1-modp1024 (`random` is not needed: openssl provides the RNGs; `updown`
    /// is added only when a CHILD_SA runs an updown script).
    public static let libipsecPlugins = [
        "nonce", "openssl", "kdf", "kernel-libipsec", "kernel-netlink", "socket-default", "vici",
    ]
    /// Plugins for the xfrm backend (kernel ESP); not measurable on hosts without it.
    public static let xfrmPlugins = ["nonce", "openssl", "kdf", "kernel-netlink", "socket-default", "vici"]

    /// The instance directory (holds strongswan.conf, charon.vici, charon.log, charon.pid).
    public var directory: String
    /// ESP backend.
    public var backend: KernelBackend
    /// IKE port (`charon.port`).
    public var ikePort: UInt16
    /// NAT-T port (`charon.port_nat_t`); libipsec always uses it for ESP-in-UDP.
    public var natTPort: UInt16
    /// charon's private routing table (`charon.routing_table`).
    public var routingTable: UInt32
    /// Priority of charon's rule to that table (`charon.routing_table_prio`).
    public var routingRulePriority: UInt32
    /// The fwmark that charon's rule requires; nothing may set this mark.
    public var unusedFirewallMark: UInt32
    /// First retransmission timeout in seconds (`charon.retransmit_timeout`).
    public var retransmitTimeout: Double
    /// Retransmission backoff base (`charon.retransmit_base`).
    public var retransmitBase: Double
    /// Retransmissions before giving up (`charon.retransmit_tries`).
    public var retransmitTries: Int
    /// Worker threads (`charon.threads`).
    public var threads: Int
    /// Default log level of the file log (-1 silent … 4 very verbose; 1 is "basic").
    public var logLevel: Int
    /// Whether to load the updown plugin (needed if any CHILD_SA sets `updown`).
    public var loadUpdown: Bool

    /// Creates an instance config with Warren's defaults.
    public init(directory: String, backend: KernelBackend = .libipsec, ikePort: UInt16 = 500,
                natTPort: UInt16 = 4500, routingTable: UInt32 = 2220, routingRulePriority: UInt32 = 2220,
                unusedFirewallMark: UInt32 = 0x5752_0000, retransmitTimeout: Double = 2.0,
                retransmitBase: Double = 1.4, retransmitTries: Int = 3, threads: Int = 16,
                logLevel: Int = 1, loadUpdown: Bool = false) {
        self.directory = directory
        self.backend = backend
        self.ikePort = ikePort
        self.natTPort = natTPort
        self.routingTable = routingTable
        self.routingRulePriority = routingRulePriority
        self.unusedFirewallMark = unusedFirewallMark
        self.retransmitTimeout = retransmitTimeout
        self.retransmitBase = retransmitBase
        self.retransmitTries = retransmitTries
        self.threads = threads
        self.logLevel = logLevel
        self.loadUpdown = loadUpdown
    }

    /// Path of strongswan.conf (pass as `STRONGSWAN_CONF`).
    public var configPath: String { directory + "/strongswan.conf" }
    /// Path of the vici Unix socket.
    public var viciSocketPath: String { directory + "/charon.vici" }
    /// `unix://` URI of the vici socket (for `swanctl --uri`).
    public var viciURI: String { "unix://" + viciSocketPath }
    /// Path of charon's log file.
    public var logPath: String { directory + "/charon.log" }
    /// Where charon writes its pid (it writes /run/charon.pid, and DIR is mounted on /run).
    public var pidPath: String { directory + "/charon.pid" }

    /// The plugins in the rendered `load` line.
    public var plugins: [String] {
        (backend == .libipsec ? Self.libipsecPlugins : Self.xfrmPlugins) + (loadUpdown ? ["updown"] : [])
    }

    /// Seconds from an unanswered IKEv2 request (e.g. a DPD probe) until charon gives up
    /// on the peer: the sum of `retransmitTimeout * retransmitBase^n` for n = 0...tries.
    public var retransmitGiveUpSeconds: Double {
        var total = 0.0, t = retransmitTimeout
        for _ in 0...max(retransmitTries, 0) {
            total += t
            t *= retransmitBase
        }
        return total
    }

    /// Checks what the rendered file and the launch command depend on.
    public func validate() throws(ViciError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-")
        guard directory.hasPrefix("/"), directory.count > 1, directory.allSatisfy({ allowed.contains($0) }),
              !directory.contains("//"), !directory.hasSuffix("/") else {
            throw .invalidConfiguration(field: "directory",
                                        reason: "'\(directory)' must be an absolute path of A-Z a-z 0-9 / . _ - without trailing slash")
        }
        if directory == "/run" || directory.hasPrefix("/run/") || directory == "/var/run" || directory.hasPrefix("/var/run/") {
            throw .invalidConfiguration(field: "directory",
                                        reason: "'\(directory)' is under /run, which charon's mount namespace replaces with this directory")
        }
        if viciSocketPath.utf8.count > 107 {
            throw .invalidConfiguration(field: "directory",
                                        reason: "socket path \(viciSocketPath) is longer than 107 bytes (sun_path)")
        }
        if ikePort == 0 || natTPort == 0 || ikePort == natTPort {
            throw .invalidConfiguration(field: "ikePort/natTPort", reason: "must be distinct and non-zero")
        }
        if routingTable == 0 || [253, 254, 255].contains(routingTable) {
            throw .invalidConfiguration(field: "routingTable", reason: "\(routingTable) is not a private table")
        }
        if unusedFirewallMark == 0 {
            throw .invalidConfiguration(field: "unusedFirewallMark", reason: "0 would match unmarked packets")
        }
        if retransmitTimeout <= 0 || retransmitBase < 1 || retransmitTries < 0 {
            throw .invalidConfiguration(field: "retransmit", reason: "timeout > 0, base >= 1, tries >= 0")
        }
        if threads < 12 {
            throw .invalidConfiguration(field: "threads", reason: "\(threads) < 12: charon keeps about 9 workers busy with long-running jobs and would not serve vici")
        }
        if !(-1...4).contains(logLevel) { throw .invalidConfiguration(field: "logLevel", reason: "must be -1...4") }
    }

    /// The command line that starts this charon in network namespace `netns`, in a
    /// private mount namespace with DIR bind-mounted on /run; `exec` keeps charon's pid
    /// equal to the spawned process's pid. Call `validate()` first (DIR is embedded in a
    /// shell command).
    public func launchArguments(netns: String, charonPath: String = "/usr/lib/ipsec/charon") -> [String] {
        ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount --bind \(directory) /run && exec env STRONGSWAN_CONF=\(configPath) \(charonPath)"]
    }

    private static func format(_ d: Double) -> String {
        let r = (d * 100).rounded() / 100
        return r == r.rounded() ? String(Int(r)) + ".0" : String(r)
    }

    /// The strongswan.conf text.
    public func strongswanConf() -> String {
        let mark = "0x" + String(unusedFirewallMark, radix: 16)
        let giveUp = Self.format(retransmitGiveUpSeconds)
        var out: [String] = [
            "# strongswan.conf for one Warren IPsec instance (\(backend.rawValue) backend).",
            "# Generated by WarrenVici.CharonInstanceConfig; do not edit, it is rewritten.",
            "# Secrets are never written here: pre-shared keys are loaded over vici only.",
            "charon {",
        ]
        func block(_ indent: Int, _ lines: [String]) {
            let pad = String(repeating: "    ", count: indent)
            out += lines.map { $0.isEmpty ? "" : pad + $0 }
            out.append("")
        }
        block(1, [
            "# Explicit plugin list: Debian ships some needed plugins with load = no, and modular",
            "# loading would pull in every installed plugin. Minimal set, measured on 5.9.8.",
            "load = \(plugins.joined(separator: " "))",
        ])
        block(1, [
            "# IKE and NAT-T ports. libipsec always sends ESP in UDP on port_nat_t.",
            "port = \(ikePort)",
            "port_nat_t = \(natTPort)",
        ])
        switch backend {
        case .libipsec:
            block(1, [
                "# kernel-libipsec always installs \"0.0.0.0/0 dev ipsecN\" in charon's routing table,",
                "# whatever install_routes says. Keep that table private: the only rule to it",
                "# (added by charon) requires fwmark \(mark), which nothing sets, so the route is",
                "# never consulted and cannot swallow IKE or another tunnel's traffic. Which",
                "# prefixes enter the tunnel is decided by the main table (routes via the TUN).",
                "routing_table = \(routingTable)",
                "routing_table_prio = \(routingRulePriority)",
                "# No policy routes beyond that TUN route (which libipsec adds regardless).",
                "install_routes = no",
            ])
        case .xfrm:
            block(1, [
                "# charon's own routing table stays private (its rule requires fwmark \(mark),",
                "# which nothing sets), so any route charon adds there is never consulted.",
                "routing_table = \(routingTable)",
                "routing_table_prio = \(routingRulePriority)",
                "# Route-based VPN over XFRM interfaces: the agent routes prefixes into the",
                "# xfrm interface in the main table; charon installs no policy routes.",
                "install_routes = no",
            ])
        }
        block(1, [
            "# No virtual IPs are used; never let charon add addresses to interfaces.",
            "install_virtual_ip = no",
        ])
        block(1, [
            "# IKEv2 reauthentication creates the new IKE/CHILD_SAs before deleting the old",
            "# ones, so reauthentication does not drop traffic.",
            "make_before_break = yes",
        ])
        let withAWSInterval = Self.format(10 + retransmitGiveUpSeconds)
        let verdict = 10 + retransmitGiveUpSeconds <= 30 ? "inside" : "OUTSIDE"
        block(1, [
            "# Retransmissions: \(Self.format(retransmitTimeout)) s, then x\(Self.format(retransmitBase)) each, \(retransmitTries) retries. An unanswered",
            "# request (e.g. a DPD probe) fails after \(giveUp) s, so a lost peer is noticed within",
            "# dpd_delay + \(giveUp) s: with a 10 s DPD interval \(withAWSInterval) s, \(verdict) a 30 s DPD",
            "# timeout. (charon's defaults, 4 s x1.8 with 5 retries, take 165 s.)",
            "retransmit_timeout = \(Self.format(retransmitTimeout))",
            "retransmit_base = \(Self.format(retransmitBase))",
            "retransmit_tries = \(retransmitTries)",
        ])
        block(1, [
            "# Worker threads. An idle charon with this plugin set keeps 9 jobs running on",
            "# workers (receivers, libipsec, netlink, vici); with 8 threads vici requests were",
            "# never served (measured). 16 leaves room for IKE and vici work.",
            "threads = \(threads)",
        ])
        block(1, [
            "# Log to the instance directory only. No syslog logger is configured, so nothing",
            "# goes to syslog, and charon writes nothing to stdout/stderr.",
            "filelog {",
            "    warren {",
            "        path = \(logPath)",
            "        time_format = %Y-%m-%dT%H:%M:%S",
            "        ike_name = yes",
            "        append = yes",
            "        flush_line = yes",
            "        default = \(logLevel)",
            "    }",
            "}",
        ])
        out.append("    plugins {")
        block(2, [
            "# Warren controls this charon only through this socket.",
            "vici {",
            "    socket = unix://\(viciSocketPath)",
            "}",
        ])
        switch backend {
        case .libipsec:
            block(2, [
                "# The unused mark on charon's routing rule (see routing_table above).",
                "kernel-netlink {",
                "    fwmark = \(mark)",
                "}",
            ])
            block(2, [
                "# Userspace ESP over a TUN device (MTU 1400, compiled in). Traffic selectors",
                "# are 0.0.0.0/0; routing decides what enters the TUN.",
                "kernel-libipsec {",
                "    allow_peer_ts = no",
                "}",
            ])
        case .xfrm:
            block(2, [
                "# Kernel ESP. The unused mark on charon's routing rule (see routing_table).",
                "# (install_routes = no above already keeps charon from routing into XFRM",
                "# interfaces; 5.9.8 has no separate install_routes_xfrmi option.)",
                "kernel-netlink {",
                "    fwmark = \(mark)",
                "}",
            ])
        }
        if out.last == "" { out.removeLast() }
        out.append("    }")
        out.append("}")
        return out.joined(separator: "\n") + "\n"
    }
}
