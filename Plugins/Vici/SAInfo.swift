// SAInfo.swift — typed views of what charon reports: SAs, connections, version, stats,
// and the up/down and rekey events.
//
// What: parsers from vici messages (README: list-sa, list-conn, ike-updown, child-updown,
// ike-rekey, child-rekey, version, stats) into plain structs. Numbers arrive as decimal
// strings and SPIs as hex strings; both are converted here.
//
// Invariants:
// - An IKE_SA needs `uniqueid` and `state`, a CHILD_SA `uniqueid` and `state`; anything
//   else missing becomes nil/0/empty (charon omits keys that do not apply, e.g. counters
//   of a CHILD_SA that is not installed). Missing required keys throw
//   `ViciError.unexpectedResponse`, naming the key.
// - charon 5.9 keys `child-sas` entries as `<name>-<uniqueid>` and puts the real name in a
//   `name` key; the parser prefers `name` and falls back to the section key.
// - In up/down events `up = yes` is present only for "up"; absent means down.
//
// Threading: values, `Sendable`.

/// State of an IKE_SA as charon names it.
public enum IKESAState: Sendable, Hashable {
    /// charon's IKE_SA states (`CREATED` ... `DESTROYING`).
    case created, connecting, established, passive, rekeying, rekeyed, deleting, destroying
    /// A state name this client does not know.
    case other(String)

    /// Parses charon's state name (e.g. `ESTABLISHED`).
    public init(_ name: String) {
        switch name {
        case "CREATED": self = .created
        case "CONNECTING": self = .connecting
        case "ESTABLISHED": self = .established
        case "PASSIVE": self = .passive
        case "REKEYING": self = .rekeying
        case "REKEYED": self = .rekeyed
        case "DELETING": self = .deleting
        case "DESTROYING": self = .destroying
        default: self = .other(name)
        }
    }
}

extension IKESAState: CustomStringConvertible {
    /// charon's name for the state (`ESTABLISHED`, ...).
    public var name: String {
        switch self {
        case .created: "CREATED"
        case .connecting: "CONNECTING"
        case .established: "ESTABLISHED"
        case .passive: "PASSIVE"
        case .rekeying: "REKEYING"
        case .rekeyed: "REKEYED"
        case .deleting: "DELETING"
        case .destroying: "DESTROYING"
        case .other(let n): n
        }
    }
    public var description: String { name }
}

/// State of a CHILD_SA as charon names it.
public enum ChildSAState: Sendable, Hashable {
    /// charon's CHILD_SA states (`CREATED` ... `DESTROYING`).
    case created, routed, installing, installed, updating, rekeying, rekeyed, retrying, deleting, deleted, destroying
    /// A state name this client does not know.
    case other(String)

    /// Parses charon's state name (e.g. `INSTALLED`).
    public init(_ name: String) {
        switch name {
        case "CREATED": self = .created
        case "ROUTED": self = .routed
        case "INSTALLING": self = .installing
        case "INSTALLED": self = .installed
        case "UPDATING": self = .updating
        case "REKEYING": self = .rekeying
        case "REKEYED": self = .rekeyed
        case "RETRYING": self = .retrying
        case "DELETING": self = .deleting
        case "DELETED": self = .deleted
        case "DESTROYING": self = .destroying
        default: self = .other(name)
        }
    }
}

extension ChildSAState: CustomStringConvertible {
    /// charon's name for the state (`INSTALLED`, ...).
    public var name: String {
        switch self {
        case .created: "CREATED"
        case .routed: "ROUTED"
        case .installing: "INSTALLING"
        case .installed: "INSTALLED"
        case .updating: "UPDATING"
        case .rekeying: "REKEYING"
        case .rekeyed: "REKEYED"
        case .retrying: "RETRYING"
        case .deleting: "DELETING"
        case .deleted: "DELETED"
        case .destroying: "DESTROYING"
        case .other(let n): n
        }
    }
    public var description: String { name }
}

/// A CHILD_SA as reported by list-sas and the child events.
public struct ChildSAInfo: Sendable, Hashable {
    /// CHILD_SA config name.
    public var name: String
    /// charon's unique CHILD_SA id.
    public var uniqueId: UInt32
    /// The reqid (identifies the policy set; stable across rekeys).
    public var reqid: UInt32?
    /// State.
    public var state: ChildSAState
    /// `TUNNEL`, `TRANSPORT`, ...
    public var mode: String?
    /// `ESP` or `AH`.
    public var ipsecProtocol: String?
    /// Whether ESP is UDP-encapsulated.
    public var encap: Bool
    /// Inbound SPI (nil before install).
    public var spiIn: UInt32?
    /// Outbound SPI.
    public var spiOut: UInt32?
    /// ESP encryption algorithm, e.g. `AES_CBC`.
    public var encryptionAlgorithm: String?
    /// Encryption key size in bits.
    public var encryptionKeySize: Int?
    /// Integrity algorithm, e.g. `HMAC_SHA1_96`.
    public var integrityAlgorithm: String?
    /// PFS group used for rekeying, e.g. `MODP_1024`.
    public var dhGroup: String?
    /// Bytes received and decrypted.
    public var bytesIn: UInt64
    /// Bytes encrypted and sent.
    public var bytesOut: UInt64
    /// Packets received.
    public var packetsIn: UInt64
    /// Packets sent.
    public var packetsOut: UInt64
    /// Seconds since the last inbound packet (nil: none yet).
    public var useIn: Int?
    /// Seconds since the last outbound packet.
    public var useOut: Int?
    /// Local traffic selectors.
    public var localTS: [String]
    /// Remote traffic selectors.
    public var remoteTS: [String]
    /// Seconds since the CHILD_SA was installed.
    public var installTime: Int?
    /// Seconds until it is rekeyed.
    public var rekeyTime: Int?
    /// Seconds until it expires.
    public var lifeTime: Int?

    /// Parses one `child-sas` entry; `key` is the section key (fallback name).
    public init(key: String, section m: ViciMessage) throws(ViciError) {
        name = m.string("name") ?? key
        guard let uid = m.string("uniqueid").flatMap({ UInt32($0) }) else {
            throw .unexpectedResponse(command: "list-sas", reason: "CHILD_SA '\(key)' has no uniqueid")
        }
        guard let st = m.string("state") else {
            throw .unexpectedResponse(command: "list-sas", reason: "CHILD_SA '\(key)' has no state")
        }
        uniqueId = uid
        state = ChildSAState(st)
        reqid = m.string("reqid").flatMap { UInt32($0) }
        mode = m.string("mode")
        ipsecProtocol = m.string("protocol")
        encap = m.bool("encap") ?? false
        spiIn = m.string("spi-in").flatMap { UInt32($0, radix: 16) }
        spiOut = m.string("spi-out").flatMap { UInt32($0, radix: 16) }
        encryptionAlgorithm = m.string("encr-alg")
        encryptionKeySize = m.int("encr-keysize")
        integrityAlgorithm = m.string("integ-alg")
        dhGroup = m.string("dh-group")
        bytesIn = m.uint64("bytes-in") ?? 0
        bytesOut = m.uint64("bytes-out") ?? 0
        packetsIn = m.uint64("packets-in") ?? 0
        packetsOut = m.uint64("packets-out") ?? 0
        useIn = m.int("use-in")
        useOut = m.int("use-out")
        localTS = m.stringList("local-ts") ?? []
        remoteTS = m.stringList("remote-ts") ?? []
        installTime = m.int("install-time")
        rekeyTime = m.int("rekey-time")
        lifeTime = m.int("life-time")
    }
}

/// An IKE_SA as reported by list-sas and the IKE events.
public struct IKESAInfo: Sendable, Hashable {
    /// Connection (IKE_SA config) name.
    public var name: String
    /// charon's unique IKE_SA id.
    public var uniqueId: UInt32
    /// State.
    public var state: IKESAState
    /// IKE version (1 or 2; 0 if charon did not say).
    public var version: Int
    /// Local IKE endpoint address.
    public var localHost: String?
    /// Local IKE port.
    public var localPort: UInt16?
    /// Local identity.
    public var localId: String?
    /// Remote IKE endpoint address.
    public var remoteHost: String?
    /// Remote IKE port.
    public var remotePort: UInt16?
    /// Remote identity.
    public var remoteId: String?
    /// Whether we initiated this IKE_SA.
    public var initiator: Bool
    /// Initiator SPI (hex).
    public var initiatorSPI: String?
    /// Responder SPI (hex).
    public var responderSPI: String?
    /// Whether any endpoint is (or is pretended to be) behind NAT.
    public var natAny: Bool
    /// IKE encryption algorithm.
    public var encryptionAlgorithm: String?
    /// IKE encryption key size in bits.
    public var encryptionKeySize: Int?
    /// IKE integrity algorithm.
    public var integrityAlgorithm: String?
    /// IKE PRF.
    public var prfAlgorithm: String?
    /// IKE DH group.
    public var dhGroup: String?
    /// Seconds since established (nil while connecting).
    public var established: Int?
    /// Seconds until rekey.
    public var rekeyTime: Int?
    /// Seconds until reauthentication.
    public var reauthTime: Int?
    /// CHILD_SAs (in list-sas; the affected one in child-updown; empty in ike-updown).
    public var children: [ChildSAInfo]

    /// Parses an IKE_SA section; `name` is its key (the connection name).
    public init(name: String, section m: ViciMessage) throws(ViciError) {
        self.name = name
        guard let uid = m.string("uniqueid").flatMap({ UInt32($0) }) else {
            throw .unexpectedResponse(command: "list-sas", reason: "IKE_SA '\(name)' has no uniqueid")
        }
        guard let st = m.string("state") else {
            throw .unexpectedResponse(command: "list-sas", reason: "IKE_SA '\(name)' has no state")
        }
        uniqueId = uid
        state = IKESAState(st)
        version = m.int("version") ?? 0
        localHost = m.string("local-host")
        localPort = m.string("local-port").flatMap { UInt16($0) }
        localId = m.string("local-id")
        remoteHost = m.string("remote-host")
        remotePort = m.string("remote-port").flatMap { UInt16($0) }
        remoteId = m.string("remote-id")
        initiator = m.bool("initiator") ?? false
        initiatorSPI = m.string("initiator-spi")
        responderSPI = m.string("responder-spi")
        natAny = m.bool("nat-any") ?? false
        encryptionAlgorithm = m.string("encr-alg")
        encryptionKeySize = m.int("encr-keysize")
        integrityAlgorithm = m.string("integ-alg")
        prfAlgorithm = m.string("prf-alg")
        dhGroup = m.string("dh-group")
        established = m.int("established")
        rekeyTime = m.int("rekey-time")
        reauthTime = m.int("reauth-time")
        var kids: [ChildSAInfo] = []
        if let cs = m.section("child-sas") {
            for e in cs.entries {
                guard case .section(let s) = e.value else { continue }
                kids.append(try ChildSAInfo(key: e.key, section: s))
            }
        }
        children = kids
    }

    /// Parses a list-sa event message (`{ <name> = { ... } }`) into its IKE_SAs.
    public static func parseList(_ message: ViciMessage) throws(ViciError) -> [IKESAInfo] {
        var out: [IKESAInfo] = []
        for e in message.entries {
            if case .section(let s) = e.value { out.append(try IKESAInfo(name: e.key, section: s)) }
        }
        return out
    }
}

/// A CHILD_SA config as reported by list-conns.
public struct ChildConnectionInfo: Sendable, Hashable {
    /// CHILD_SA config name.
    public var name: String
    /// IPsec mode (`TUNNEL`, ...).
    public var mode: String?
    /// Local traffic selectors.
    public var localTS: [String]
    /// Remote traffic selectors.
    public var remoteTS: [String]
}

/// A loaded connection as reported by list-conns.
public struct ConnectionInfo: Sendable, Hashable {
    /// Connection name.
    public var name: String
    /// Local addresses.
    public var localAddrs: [String]
    /// Remote addresses.
    public var remoteAddrs: [String]
    /// `IKEv1`, `IKEv2` or `0` (any).
    public var version: String?
    /// Identities of the local auth rounds, in order.
    public var localIds: [String]
    /// Identities of the remote auth rounds, in order.
    public var remoteIds: [String]
    /// CHILD_SA configs.
    public var children: [ChildConnectionInfo]

    /// Parses one list-conn entry.
    public init(name: String, section m: ViciMessage) {
        self.name = name
        localAddrs = m.stringList("local_addrs") ?? []
        remoteAddrs = m.stringList("remote_addrs") ?? []
        version = m.string("version")
        var lids: [String] = [], rids: [String] = []
        for e in m.entries {
            guard case .section(let s) = e.value else { continue }
            if e.key.hasPrefix("local"), let id = s.string("id") { lids.append(id) }
            if e.key.hasPrefix("remote"), let id = s.string("id") { rids.append(id) }
        }
        localIds = lids
        remoteIds = rids
        var kids: [ChildConnectionInfo] = []
        for e in m.section("children")?.entries ?? [] {
            guard case .section(let s) = e.value else { continue }
            kids.append(ChildConnectionInfo(name: e.key, mode: s.string("mode"),
                                            localTS: s.stringList("local-ts") ?? [],
                                            remoteTS: s.stringList("remote-ts") ?? []))
        }
        children = kids
    }
}

/// charon's `version` answer.
public struct VersionInfo: Sendable, Hashable {
    /// Daemon name, e.g. `charon`.
    public var daemon: String
    /// strongSwan version, e.g. `5.9.8`.
    public var version: String
    /// Operating system name.
    public var sysname: String
    /// Operating system release.
    public var release: String
    /// Machine (architecture).
    public var machine: String
}

/// charon's `stats` answer (the fields Warren uses, plus the raw message).
public struct StatsInfo: Sendable, Hashable {
    /// Human-readable uptime.
    public var uptimeRunning: String?
    /// Start time.
    public var uptimeSince: String?
    /// Worker threads in total.
    public var workersTotal: Int?
    /// Idle worker threads.
    public var workersIdle: Int?
    /// IKE_SAs in total.
    public var ikeSAsTotal: Int?
    /// Half-open IKE_SAs.
    public var ikeSAsHalfOpen: Int?
    /// Loaded plugin names.
    public var plugins: [String]
    /// The whole answer.
    public var raw: ViciMessage

    /// Parses a `stats` response.
    public init(_ m: ViciMessage) {
        uptimeRunning = m.section("uptime")?.string("running")
        uptimeSince = m.section("uptime")?.string("since")
        workersTotal = m.section("workers")?.int("total")
        workersIdle = m.section("workers")?.int("idle")
        ikeSAsTotal = m.section("ikesas")?.int("total")
        ikeSAsHalfOpen = m.section("ikesas")?.int("half-open")
        plugins = m.stringList("plugins") ?? []
        raw = m
    }
}

/// An `ike-updown` or `child-updown` event.
public struct SAUpDown: Sendable, Hashable {
    /// True for up, false for down.
    public var up: Bool
    /// The IKE_SA (for child-updown, `children` holds the affected CHILD_SA).
    public var ikeSA: IKESAInfo
    /// The affected CHILD_SA (child-updown only).
    public var child: ChildSAInfo? { ikeSA.children.first }
}

/// An `ike-rekey` event: the old and the new IKE_SA.
public struct IKERekey: Sendable, Hashable {
    /// The IKE_SA being replaced.
    public var old: IKESAInfo
    /// Its replacement.
    public var new: IKESAInfo
}

/// A `child-rekey` event: the IKE_SA and the old and new CHILD_SA.
public struct ChildRekey: Sendable, Hashable {
    /// The IKE_SA (its `children` is empty).
    public var ikeSA: IKESAInfo
    /// The CHILD_SA being replaced.
    public var old: ChildSAInfo
    /// Its replacement.
    public var new: ChildSAInfo
}

extension ViciEvent {
    /// For `ike-updown` / `child-updown`: the direction and the SA; nil for other events.
    public func upDown() throws(ViciError) -> SAUpDown? {
        guard name == "ike-updown" || name == "child-updown" else { return nil }
        for e in message.entries {
            if case .section(let s) = e.value {
                return SAUpDown(up: message.bool("up") ?? false, ikeSA: try IKESAInfo(name: e.key, section: s))
            }
        }
        throw .unexpectedResponse(command: name, reason: "event carries no IKE_SA section")
    }

    /// For `ike-rekey`: old and new IKE_SA; nil for other events.
    public func ikeRekey() throws(ViciError) -> IKERekey? {
        guard name == "ike-rekey" else { return nil }
        for e in message.entries {
            if case .section(let s) = e.value, let o = s.section("old"), let n = s.section("new") {
                return IKERekey(old: try IKESAInfo(name: e.key, section: o), new: try IKESAInfo(name: e.key, section: n))
            }
        }
        throw .unexpectedResponse(command: name, reason: "event lacks old/new IKE_SA sections")
    }

    /// For `child-rekey`: the IKE_SA with old and new CHILD_SA; nil for other events.
    public func childRekey() throws(ViciError) -> ChildRekey? {
        guard name == "child-rekey" else { return nil }
        for e in message.entries {
            guard case .section(var s) = e.value else { continue }
            guard let cs = s.section("child-sas"), let first = cs.entries.first,
                  case .section(let pair) = first.value,
                  let o = pair.section("old"), let n = pair.section("new") else { break }
            s["child-sas"] = nil
            return ChildRekey(ikeSA: try IKESAInfo(name: e.key, section: s),
                              old: try ChildSAInfo(key: first.key, section: o),
                              new: try ChildSAInfo(key: first.key, section: n))
        }
        throw .unexpectedResponse(command: name, reason: "event lacks old/new CHILD_SA sections")
    }
}
