// ConnectionConfig.swift — the swanctl.conf connection subset Warren loads over vici.
//
// What: `ConnectionConfig` (an IKE connection), `AuthConfig` (one auth round) and
// `ChildConfig` (a CHILD_SA) mirror the swanctl.conf keys of the same names and render
// into the message of vici `load-conn` (`viciMessage()`), e.g.
//   { <name> = { version = 2, local_addrs = [..], proposals = [..], rekey_time = 14400s,
//                local = { auth = psk, id = .. }, remote = { .. },
//                children = { <child> = { local_ts = [..], esp_proposals = [..], .. } } } }
//
// Invariants:
// - No secrets here: PSKs are loaded separately with `loadSharedKey` (vici `load-shared`).
// - `validate()` rejects what charon would reject or silently misread (empty or odd
//   names, duplicate child names, ports 0, lifetimes not longer than rekey times), naming
//   the field. Times are whole seconds and render as `<n>s`.
// - Enumerated options use the spellings strongSwan 5.9.8 accepts (checked against a
//   real charon by the ViciTests).
//
// Threading: values, `Sendable`.

/// IKE version of a connection.
public enum IKEVersion: Int, Sendable, Hashable, CaseIterable {
    /// Accept both IKEv1 and IKEv2 as responder; IKEv2 as initiator.
    case any = 0
    /// IKEv1 (main mode).
    case ikev1 = 1
    /// IKEv2.
    case ikev2 = 2
}

/// How charon treats a new IKE_SA with the same peer identity (swanctl `unique`).
public enum UniquePolicy: String, Sendable, Hashable, CaseIterable {
    /// `no`: replace on INITIAL_CONTACT; `never`: keep all; `keep`: reject new;
    /// `replace`: delete the old IKE_SA when a new one with the same identities appears.
    case no, never, keep, replace
}

/// Action on a CHILD_SA when DPD declares the peer dead (swanctl `dpd_action`).
public enum DPDAction: String, Sendable, Hashable, CaseIterable {
    /// Do nothing / close the CHILD_SA / install a trap policy / re-initiate at once.
    case none, clear, trap, restart
}

/// What charon does with a CHILD_SA config when it is loaded (swanctl `start_action`).
/// With kernel-libipsec, `trap` never brings a tunnel up (libipsec sends no acquires).
public enum StartAction: String, Sendable, Hashable, CaseIterable {
    /// Load only / install a trap policy / initiate at once.
    case none, trap, start
}

/// Action when the peer closes a CHILD_SA (swanctl `close_action`).
public enum CloseAction: String, Sendable, Hashable, CaseIterable {
    /// `none` and `clear`: nothing more happens; `trap`: install a trap policy;
    /// `start`: re-initiate at once.
    case none, clear, trap, start
}

/// IPsec mode of a CHILD_SA (swanctl `mode`).
public enum IPsecMode: String, Sendable, Hashable, CaseIterable {
    /// Tunnel mode (Warren) or transport mode.
    case tunnel, transport
}

/// One authentication round (swanctl `local`/`remote` sections).
public struct AuthConfig: Sendable, Hashable {
    /// Authentication method.
    public enum Method: String, Sendable, Hashable {
        /// Pre-shared key (the key itself is loaded with `loadSharedKey`).
        case psk
    }

    /// The method (swanctl `auth`).
    public var method: Method
    /// The IKE identity (swanctl `id`); nil lets charon use the IP address.
    public var id: String?

    /// Creates an auth round.
    public init(method: Method = .psk, id: String? = nil) {
        self.method = method
        self.id = id
    }

    /// A PSK auth round with identity `id`.
    public static func psk(id: String?) -> AuthConfig { AuthConfig(method: .psk, id: id) }
}

/// A CHILD_SA configuration (swanctl `children.<name>`).
public struct ChildConfig: Sendable, Hashable {
    /// The CHILD_SA config name.
    public var name: String
    /// Local traffic selectors, e.g. `["0.0.0.0/0"]` (empty: charon's default, `dynamic`).
    public var localTS: [String]
    /// Remote traffic selectors.
    public var remoteTS: [String]
    /// ESP proposals, e.g. `["aes128-sha1-modp1024"]` (a DH group enables PFS).
    public var espProposals: [String]
    /// Seconds until the CHILD_SA is rekeyed.
    public var rekeyTime: Int
    /// Hard lifetime in seconds (nil: charon's default, rekeyTime + 10 %).
    public var lifeTime: Int?
    /// Random jitter subtracted from rekeyTime, seconds (nil: charon's default).
    public var randTime: Int?
    /// Action when DPD declares the peer dead.
    public var dpdAction: DPDAction
    /// Action when the config is loaded.
    public var startAction: StartAction
    /// Action when the peer closes the CHILD_SA.
    public var closeAction: CloseAction
    /// IPsec mode.
    public var mode: IPsecMode
    /// An updown script run on CHILD_SA up/down (needs the updown plugin), or nil.
    public var updown: String?
    /// XFRM interface ID for inbound SAs/policies (kernel-netlink backend with xfrm
    /// interfaces only; nil for kernel-libipsec).
    public var ifIdIn: UInt32?
    /// XFRM interface ID for outbound SAs/policies (see `ifIdIn`).
    public var ifIdOut: UInt32?

    /// Creates a CHILD_SA config. Defaults follow the Warren recipe (tunnel mode, start
    /// nothing on load, clear on DPD).
    public init(name: String, localTS: [String] = ["0.0.0.0/0"], remoteTS: [String] = ["0.0.0.0/0"],
                espProposals: [String], rekeyTime: Int = 3240, lifeTime: Int? = 3600, randTime: Int? = nil,
                dpdAction: DPDAction = .clear, startAction: StartAction = .none,
                closeAction: CloseAction = .none, mode: IPsecMode = .tunnel, updown: String? = nil,
                ifIdIn: UInt32? = nil, ifIdOut: UInt32? = nil) {
        self.name = name
        self.localTS = localTS
        self.remoteTS = remoteTS
        self.espProposals = espProposals
        self.rekeyTime = rekeyTime
        self.lifeTime = lifeTime
        self.randTime = randTime
        self.dpdAction = dpdAction
        self.startAction = startAction
        self.closeAction = closeAction
        self.mode = mode
        self.updown = updown
        self.ifIdIn = ifIdIn
        self.ifIdOut = ifIdOut
    }
}

/// An IKE connection (swanctl `connections.<name>`), loaded with vici `load-conn`.
public struct ConnectionConfig: Sendable, Hashable {
    /// The connection (IKE_SA config) name.
    public var name: String
    /// IKE version.
    public var version: IKEVersion
    /// Local addresses to use for IKE (empty: any).
    public var localAddrs: [String]
    /// Remote addresses (the peer's outside address).
    public var remoteAddrs: [String]
    /// Local IKE port (nil: charon's, 500 with NAT-T floating to 4500).
    public var localPort: UInt16?
    /// Remote IKE port (nil: 500).
    public var remotePort: UInt16?
    /// IKE proposals, e.g. `["aes128-sha1-modp1024"]` (empty: charon's default).
    public var proposals: [String]
    /// Seconds until the IKE_SA is rekeyed (IKEv1 reauthenticates instead).
    public var rekeyTime: Int
    /// Seconds after rekey/reauth time before the IKE_SA is closed (nil: charon default).
    public var overTime: Int?
    /// Random jitter subtracted from rekey/reauth time (nil: charon default).
    public var randTime: Int?
    /// Seconds until reauthentication (nil: none in IKEv2).
    public var reauthTime: Int?
    /// DPD interval in seconds (0 disables DPD).
    public var dpdDelay: Int
    /// IKEv1 only: seconds without answer before the peer is dead (nil: charon default).
    public var dpdTimeout: Int?
    /// Number of attempts to establish the IKE_SA (0: forever).
    public var keyingTries: Int
    /// Force UDP encapsulation of ESP (NAT-T) even without NAT.
    public var encap: Bool
    /// Enable MOBIKE (IKEv2 only).
    public var mobike: Bool
    /// Uniqueness policy for IKE_SAs of the same identities.
    public var unique: UniquePolicy
    /// The local authentication round.
    public var localAuth: AuthConfig
    /// The remote authentication round.
    public var remoteAuth: AuthConfig
    /// CHILD_SA configs.
    public var children: [ChildConfig]

    /// Creates an IKE connection config.
    public init(name: String, version: IKEVersion = .ikev2, localAddrs: [String], remoteAddrs: [String],
                localPort: UInt16? = nil, remotePort: UInt16? = nil, proposals: [String],
                rekeyTime: Int = 28800, overTime: Int? = nil, randTime: Int? = nil, reauthTime: Int? = nil,
                dpdDelay: Int = 10, dpdTimeout: Int? = nil, keyingTries: Int = 1, encap: Bool = false,
                mobike: Bool = false, unique: UniquePolicy = .replace,
                localAuth: AuthConfig, remoteAuth: AuthConfig, children: [ChildConfig]) {
        self.name = name
        self.version = version
        self.localAddrs = localAddrs
        self.remoteAddrs = remoteAddrs
        self.localPort = localPort
        self.remotePort = remotePort
        self.proposals = proposals
        self.rekeyTime = rekeyTime
        self.overTime = overTime
        self.randTime = randTime
        self.reauthTime = reauthTime
        self.dpdDelay = dpdDelay
        self.dpdTimeout = dpdTimeout
        self.keyingTries = keyingTries
        self.encap = encap
        self.mobike = mobike
        self.unique = unique
        self.localAuth = localAuth
        self.remoteAuth = remoteAuth
        self.children = children
    }

    /// Checks the config; throws `ViciError.invalidConfiguration` naming the bad field.
    public func validate() throws(ViciError) {
        try Self.checkName(name, field: "name")
        if remoteAddrs.isEmpty { throw .invalidConfiguration(field: "\(name).remoteAddrs", reason: "must name the peer") }
        if localPort == 0 { throw .invalidConfiguration(field: "\(name).localPort", reason: "port 0") }
        if remotePort == 0 { throw .invalidConfiguration(field: "\(name).remotePort", reason: "port 0") }
        for (field, v) in [("rekeyTime", rekeyTime), ("dpdDelay", dpdDelay), ("keyingTries", keyingTries)] where v < 0 {
            throw .invalidConfiguration(field: "\(name).\(field)", reason: "negative (\(v))")
        }
        for (field, v) in [("overTime", overTime), ("randTime", randTime), ("reauthTime", reauthTime), ("dpdTimeout", dpdTimeout)] {
            if let v, v < 0 { throw .invalidConfiguration(field: "\(name).\(field)", reason: "negative (\(v))") }
        }
        for (field, list) in [("localAddrs", localAddrs), ("remoteAddrs", remoteAddrs), ("proposals", proposals)] {
            if list.contains(where: { $0.isEmpty || $0.contains(where: { $0 == "," || $0.isWhitespace }) }) {
                throw .invalidConfiguration(field: "\(name).\(field)", reason: "entries must be non-empty without commas or spaces")
            }
        }
        var seen = Set<String>()
        for child in children {
            let prefix = "\(name).children.\(child.name)"
            try Self.checkName(child.name, field: "\(name).children.name")
            if !seen.insert(child.name).inserted {
                throw .invalidConfiguration(field: prefix, reason: "duplicate CHILD_SA name")
            }
            if child.rekeyTime < 0 { throw .invalidConfiguration(field: "\(prefix).rekeyTime", reason: "negative") }
            if let life = child.lifeTime, child.rekeyTime > 0, life <= child.rekeyTime {
                throw .invalidConfiguration(field: "\(prefix).lifeTime",
                                            reason: "must be longer than rekeyTime (\(life) <= \(child.rekeyTime))")
            }
            if let r = child.randTime, r < 0 { throw .invalidConfiguration(field: "\(prefix).randTime", reason: "negative") }
            for (field, list) in [("localTS", child.localTS), ("remoteTS", child.remoteTS), ("espProposals", child.espProposals)] {
                if list.contains(where: { $0.isEmpty || $0.contains(where: { $0 == "," || $0.isWhitespace }) }) {
                    throw .invalidConfiguration(field: "\(prefix).\(field)", reason: "entries must be non-empty without commas or spaces")
                }
            }
        }
    }

    static func checkName(_ name: String, field: String) throws(ViciError) {
        let ok = !name.isEmpty && name.utf8.count <= 64 && name.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "-" || $0 == "_" || $0 == "."
        }
        if !ok {
            throw .invalidConfiguration(field: field, reason: "'\(name)' must be 1-64 characters of A-Z a-z 0-9 . _ -")
        }
    }

    /// The `load-conn` message for this connection.
    public func viciMessage() -> ViciMessage {
        var conn: ViciMessage = [:]
        conn["version"] = .string(String(version.rawValue))
        if !localAddrs.isEmpty { conn["local_addrs"] = .strings(localAddrs) }
        conn["remote_addrs"] = .strings(remoteAddrs)
        if let localPort { conn["local_port"] = .string(String(localPort)) }
        if let remotePort { conn["remote_port"] = .string(String(remotePort)) }
        if !proposals.isEmpty { conn["proposals"] = .strings(proposals) }
        conn["rekey_time"] = .string("\(rekeyTime)s")
        if let overTime { conn["over_time"] = .string("\(overTime)s") }
        if let randTime { conn["rand_time"] = .string("\(randTime)s") }
        if let reauthTime { conn["reauth_time"] = .string("\(reauthTime)s") }
        conn["dpd_delay"] = .string("\(dpdDelay)s")
        if let dpdTimeout { conn["dpd_timeout"] = .string("\(dpdTimeout)s") }
        conn["keyingtries"] = .string(String(keyingTries))
        conn["encap"] = .string(encap ? "yes" : "no")
        conn["mobike"] = .string(mobike ? "yes" : "no")
        conn["unique"] = .string(unique.rawValue)
        conn["local"] = .section(Self.auth(localAuth))
        conn["remote"] = .section(Self.auth(remoteAuth))
        var childSections: ViciMessage = [:]
        for child in children { childSections.append(child.name, .section(Self.child(child))) }
        conn["children"] = .section(childSections)
        return [name: .section(conn)]
    }

    static func auth(_ a: AuthConfig) -> ViciMessage {
        var m: ViciMessage = ["auth": .string(a.method.rawValue)]
        if let id = a.id { m["id"] = .string(id) }
        return m
    }

    static func child(_ c: ChildConfig) -> ViciMessage {
        var m: ViciMessage = [:]
        if !c.localTS.isEmpty { m["local_ts"] = .strings(c.localTS) }
        if !c.remoteTS.isEmpty { m["remote_ts"] = .strings(c.remoteTS) }
        if !c.espProposals.isEmpty { m["esp_proposals"] = .strings(c.espProposals) }
        m["rekey_time"] = .string("\(c.rekeyTime)s")
        if let life = c.lifeTime { m["life_time"] = .string("\(life)s") }
        if let rand = c.randTime { m["rand_time"] = .string("\(rand)s") }
        m["dpd_action"] = .string(c.dpdAction.rawValue)
        m["start_action"] = .string(c.startAction.rawValue)
        m["close_action"] = .string(c.closeAction.rawValue)
        m["mode"] = .string(c.mode.rawValue)
        if let updown = c.updown { m["updown"] = .string(updown) }
        if let id = c.ifIdIn { m["if_id_in"] = .string(String(id)) }
        if let id = c.ifIdOut { m["if_id_out"] = .string(String(id)) }
        return m
    }
}
