// CharonLabTests.swift — the vici client against real charons (strongSwan 5.9.8,
// kernel-libipsec) in two namespaces: load, initiate, events, list-sas, ESP ping,
// counters, terminate, re-initiate, PSK mismatch, rekey events, kill -9.
//
// Requires root (namespaces); CI runs as root. Each test builds its own `CharonLab` and
// destroys it in teardown, also on failure. Timings are printed as "MEASURE ..." lines.

import Foundation
import WarrenVici
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class CharonLabTests: XCTestCase {
    private var lab: CharonLab?

    override func setUp() async throws {
        XCTAssertEqual(geteuid(), 0, "these tests create network namespaces and must run as root")
    }

    override func tearDown() async throws {
        lab?.destroy()
        lab = nil
    }

    private func makeLab(backend: CharonInstanceConfig.KernelBackend = .libipsec) async throws -> CharonLab {
        let lab = try CharonLab(backend: backend)
        self.lab = lab
        try await lab.startBoth()
        return lab
    }

    // MARK: full life cycle

    func testIKEv2TunnelLifecycle() async throws {
        try await runLifecycle(version: .ikev2)
    }

    func testIKEv1MainModeTunnelLifecycle() async throws {
        try await runLifecycle(version: .ikev1)
    }

    private func runLifecycle(version: IKEVersion) async throws {
        let lab = try await makeLab()
        print("MEASURE charon start -> vici ready: l \(ms(lab.l.startToViciReady)) ms, r \(ms(lab.r.startToViciReady)) ms")
        let lv = try lab.l.vici, rv = try lab.r.vici
        let lEvents = EventRecorder(try await lv.subscribe(["ike-updown", "child-updown"]))
        let rEvents = EventRecorder(try await rv.subscribe(["ike-updown", "child-updown"]))

        try await lab.loadTunnel(version: version)
        let names = try await lv.connectionNames()
        XCTAssertEqual(names, ["tun"])
        let conns = try await lv.listConnections()
        XCTAssertEqual(conns.map(\.name), ["tun"])
        XCTAssertEqual(conns.first?.remoteAddrs, ["203.0.113.2"])
        XCTAssertEqual(conns.first?.version, version == .ikev1 ? "IKEv1" : "IKEv2")
        XCTAssertEqual(conns.first?.children.map(\.name), ["tun"])
        XCTAssertEqual(conns.first?.children.first?.localTS, ["0.0.0.0/0"])
        XCTAssertEqual(conns.first?.localIds, ["203.0.113.1"])

        // Initiate and time it until the CHILD_SA is up.
        let clock = ContinuousClock()
        let t0 = clock.now
        let log = try await lv.initiate(child: "tun", ike: "tun", timeoutMs: 10_000)
        let initiateReturned = clock.now - t0
        XCTAssertFalse(log.isEmpty, "initiate streamed no control-log lines")
        let childUp = await lEvents.wait { e in (try? e.upDown())?.map { $0.up && $0.child != nil } ?? false }
        print("MEASURE IKEv\(version.rawValue) initiate -> CHILD up: \(ms(initiateReturned)) ms (initiate returned), event seen after \(ms(clock.now - t0)) ms")
        let up = try XCTUnwrap(try childUp?.upDown(), "no child-updown up event; log:\n\(lab.log(lab.l))")
        XCTAssertEqual(up.child?.name, "tun")
        XCTAssertEqual(up.child?.state, .installed)
        XCTAssertEqual(up.ikeSA.name, "tun")
        let ikeUp = await lEvents.wait { $0.name == "ike-updown" && (try? $0.upDown())??.up == true }
        XCTAssertNotNil(ikeUp, "no ike-updown up event on the initiator")
        let rChildUp = await rEvents.wait { $0.name == "child-updown" && (try? $0.upDown())??.up == true }
        XCTAssertNotNil(rChildUp, "no child-updown up event on the responder")

        // list-sas on both sides.
        for (inst, initiator) in [(lab.l, true), (lab.r, false)] {
            let sas = try await inst.vici.listSAs()
            XCTAssertEqual(sas.count, 1)
            let ike = try XCTUnwrap(sas.first)
            XCTAssertEqual(ike.name, "tun")
            XCTAssertEqual(ike.state, .established)
            XCTAssertEqual(ike.version, version.rawValue)
            XCTAssertEqual(ike.initiator, initiator)
            XCTAssertEqual(ike.localHost, inst.address)
            XCTAssertEqual(ike.encryptionAlgorithm, "AES_CBC")
            XCTAssertEqual(ike.dhGroup, "MODP_1024")
            XCTAssertNotNil(ike.established)
            let child = try XCTUnwrap(ike.children.first)
            XCTAssertEqual(child.name, "tun")
            XCTAssertEqual(child.state, .installed)
            XCTAssertEqual(child.localTS, ["0.0.0.0/0"])
            XCTAssertEqual(child.remoteTS, ["0.0.0.0/0"])
            XCTAssertTrue(child.encap, "libipsec must use UDP encapsulation")
            XCTAssertNotNil(child.spiIn)
            XCTAssertNotNil(child.spiOut)
            XCTAssertNotNil(child.installTime)
        }
        let lSAs = try await lv.listSAs(ike: "tun")
        let lChild = try XCTUnwrap(lSAs.first?.children.first)
        let rSAs = try await rv.listSAs()
        let rChild = try XCTUnwrap(rSAs.first?.children.first)
        XCTAssertEqual(lChild.spiOut, rChild.spiIn, "initiator's outbound SPI is the responder's inbound SPI")
        XCTAssertEqual(lChild.spiIn, rChild.spiOut)
        let before = lChild

        // ESP through libipsec: ping across the TUNs, counters go up.
        try lab.addressTunnels()
        XCTAssertTrue(lab.pingAcross(count: 3), "ping across the tunnel failed; log:\n\(lab.log(lab.l))")
        let afterSAs = try await lv.listSAs()
        let after = try XCTUnwrap(afterSAs.first?.children.first)
        XCTAssertGreaterThanOrEqual(after.packetsOut, before.packetsOut + 3)
        XCTAssertGreaterThanOrEqual(after.packetsIn, before.packetsIn + 3)
        XCTAssertGreaterThan(after.bytesOut, before.bytesOut)
        XCTAssertGreaterThan(after.bytesIn, before.bytesIn)

        // charon's private routing table: the TUN default route lives there, unreachable.
        let rules = try runCommand(["ip", "-n", CharonLab.left, "rule"])
        XCTAssertTrue(rules.contains("fwmark 0x57520000 lookup 2220"), rules)
        let table = try runCommand(["ip", "-n", CharonLab.left, "route", "show", "table", "2220"])
        XCTAssertTrue(table.contains("default dev ipsec0"), "expected libipsec's route in table 2220: \(table)")
        let main = try runCommand(["ip", "-n", CharonLab.left, "route", "get", "198.51.100.1"], allowFailure: true)
        XCTAssertFalse(main.contains("ipsec0"), "the TUN default route leaked into lookups: \(main)")

        // Terminate: down events on both sides, no SAs left.
        lEvents.clear()
        rEvents.clear()
        try await lv.terminate(ike: "tun", timeoutMs: 5_000)
        let childDown = await lEvents.wait { $0.name == "child-updown" && (try? $0.upDown())??.up == false }
        XCTAssertNotNil(childDown, "no child-updown down event after terminate")
        let ikeDown = await lEvents.wait { $0.name == "ike-updown" && (try? $0.upDown())??.up == false }
        XCTAssertNotNil(ikeDown, "no ike-updown down event after terminate")
        let rIkeDown = await rEvents.wait { $0.name == "ike-updown" && (try? $0.upDown())??.up == false }
        XCTAssertNotNil(rIkeDown, "responder saw no ike-updown down event")
        let remaining = try await lv.listSAs()
        XCTAssertTrue(remaining.isEmpty, "SAs left after terminate: \(remaining.map(\.name))")
        XCTAssertFalse(lab.pingAcross(count: 1), "ping still passes with the tunnel down")

        // Re-initiate works, traffic flows again.
        let t1 = clock.now
        try await lv.initiate(child: "tun", timeoutMs: 10_000)
        print("MEASURE IKEv\(version.rawValue) re-initiate: \(ms(clock.now - t1)) ms")
        let again = try await lv.listSAs()
        XCTAssertEqual(again.first?.state, .established)
        XCTAssertEqual(again.first?.children.first?.state, .installed)
        XCTAssertTrue(lab.pingAcross(count: 2), "ping after re-initiate failed")

        // Unload: the SA goes away with the config.
        try await lv.unloadConnection("tun")
        let namesAfter = try await lv.connectionNames()
        XCTAssertEqual(namesAfter, [])
    }

    // MARK: failures

    func testPSKMismatchFailsClearlyWithoutLeakingSecrets() async throws {
        let lab = try await makeLab()
        let left = "wvt.left.secret.A", right = "wvt.right.secret.B"
        try await lab.loadTunnel(version: .ikev2, pskLeft: left, pskRight: right)
        do {
            try await lab.l.vici.initiate(child: "tun", timeoutMs: 8_000)
            XCTFail("initiate succeeded with mismatched PSKs")
        } catch let error as ViciError {
            guard case .commandFailed(let command, let message) = error else {
                return XCTFail("expected commandFailed, got \(error)")
            }
            XCTAssertEqual(command, "initiate")
            XCTAssertTrue(message.contains("AUTHENTICATION_FAILED"), "error does not say why: \(message)")
            let text = "\(error) \(String(reflecting: error))"
            XCTAssertFalse(text.contains(left) || text.contains(right), "secret in error: \(text)")
            print("MEASURE PSK mismatch error: \(error)")
        }
        let sas = try await lab.l.vici.listSAs()
        XCTAssertTrue(sas.allSatisfy { $0.state != .established })
        for i in [lab.l, lab.r] {
            let log = lab.log(i)
            XCTAssertFalse(log.contains(left) || log.contains(right), "secret in charon log")
            let conf = try String(contentsOfFile: i.config.configPath, encoding: .utf8)
            XCTAssertFalse(conf.contains(left) || conf.contains(right), "secret in strongswan.conf")
        }
    }

    func testUnknownCommandAndEventKeepConnectionUsable() async throws {
        let lab = try await makeLab()
        let v = try lab.l.vici
        do {
            _ = try await v.request("wvt-no-such-command")
            XCTFail("unknown command succeeded")
        } catch ViciError.unknownCommand(let c) {
            XCTAssertEqual(c, "wvt-no-such-command")
        }
        do {
            _ = try await v.subscribe(["wvt-no-such-event"])
            XCTFail("unknown event subscription succeeded")
        } catch ViciError.unknownEvent(let e) {
            XCTAssertEqual(e, "wvt-no-such-event")
        }
        do {
            try await v.unloadConnection("wvt-not-loaded")
            XCTFail("unloading a missing connection succeeded")
        } catch ViciError.commandFailed(let c, let m) {
            XCTAssertEqual(c, "unload-conn")
            XCTAssertFalse(m.isEmpty)
        }
        let version = try await v.version()
        XCTAssertEqual(version.daemon, "charon")
        XCTAssertTrue(version.version.hasPrefix("5.9"), version.version)
        XCTAssertTrue(v.isConnected)
    }

    func testVersionStatsAndMinimalPluginSet() async throws {
        let lab = try await makeLab()
        let stats = try await lab.l.vici.stats()
        XCTAssertEqual(Set(stats.plugins).subtracting(["charon"]), Set(CharonInstanceConfig.libipsecPlugins),
                       "charon loaded \(stats.plugins)")
        XCTAssertEqual(stats.workersTotal, 16)
        XCTAssertGreaterThanOrEqual(stats.workersIdle ?? 0, 4, "too few idle workers for vici and IKE work")
        XCTAssertEqual(stats.ikeSAsTotal, 0)
        XCTAssertNotNil(stats.uptimeSince)
        // charon wrote its pid to /run/charon.pid, i.e. into the instance directory.
        let pidText = try String(contentsOfFile: lab.l.config.pidPath, encoding: .utf8)
        XCTAssertEqual(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)), lab.l.pid)
    }

    func testConcurrentRequestsAreSerialized() async throws {
        let lab = try await makeLab()
        let v = try lab.l.vici
        try await lab.loadTunnel(version: .ikev2)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<40 {
                group.addTask {
                    switch i % 4 {
                    case 0: return try await v.version().daemon == "charon" ? 1 : 0
                    case 1: return try await v.listSAs().isEmpty ? 1 : 0
                    case 2: return try await v.listConnections().count == 1 ? 1 : 0
                    default: return try await v.stats().plugins.isEmpty ? 0 : 1
                    }
                }
            }
            var ok = 0
            for try await r in group { ok += r }
            XCTAssertEqual(ok, 40)
        }
    }

    func testEveryConfigOptionValueIsAcceptedByCharon() async throws {
        let lab = try await makeLab()
        let v = try lab.l.vici
        var n = 0
        for version in IKEVersion.allCases {
            for unique in UniquePolicy.allCases {
                n += 1
                var c = CharonLab.connection(name: "opt\(n)", version: version, from: lab.l, to: lab.r)
                c.remoteAddrs = ["203.0.113.99"]
                c.unique = unique
                c.localPort = 500
                c.remotePort = 500
                c.overTime = 60
                c.reauthTime = 7200
                c.dpdTimeout = 30
                c.mobike = version == .ikev2
                try await v.loadConnection(c)
            }
        }
        for dpd in DPDAction.allCases {
            for start in StartAction.allCases where start != .start {
                for close in CloseAction.allCases {
                    for mode in IPsecMode.allCases {
                        n += 1
                        var c = CharonLab.connection(name: "opt\(n)", version: .ikev2, from: lab.l, to: lab.r)
                        c.remoteAddrs = ["203.0.113.99"]
                        c.children[0].dpdAction = dpd
                        c.children[0].startAction = start
                        c.children[0].closeAction = close
                        c.children[0].mode = mode
                        c.children[0].localTS = ["169.254.10.0/30"]
                        c.children[0].remoteTS = ["198.51.100.0/24", "203.0.113.0/24"]
                        c.children[0].updown = nil
                        try await v.loadConnection(c)
                    }
                }
            }
        }
        let loaded = try await v.connectionNames()
        XCTAssertEqual(loaded.count, n)
        let lastList = try await v.listConnections(ike: "opt\(n)")
        let last = try XCTUnwrap(lastList.first)
        XCTAssertEqual(last.children.first?.remoteTS, ["198.51.100.0/24", "203.0.113.0/24"])
        XCTAssertEqual(last.children.first?.mode, "TRANSPORT")
        // charon rejects a bad value with a clear message, naming the key.
        var bad = CharonLab.connection(name: "bad", version: .ikev2, from: lab.l, to: lab.r)
        bad.proposals = ["wvt-no-such-cipher"]
        do {
            try await v.loadConnection(bad)
            XCTFail("charon accepted a bogus proposal")
        } catch ViciError.commandFailed(let command, let message) {
            XCTAssertEqual(command, "load-conn")
            XCTAssertTrue(message.contains("proposals"), message)
        }
    }

    func testRekeyEventsAndTrafficAcrossRekey() async throws {
        let lab = try await makeLab()
        let lv = try lab.l.vici
        let events = EventRecorder(try await lv.subscribe(["ike-rekey", "child-rekey", "child-updown"]))
        try await lab.loadTunnel(version: .ikev2, childRekey: 3, childLife: 30, ikeRekey: 5)
        try await lv.initiate(child: "tun", timeoutMs: 10_000)
        try lab.addressTunnels()
        let childRekey = await events.wait(timeout: .seconds(15)) { $0.name == "child-rekey" }
        let rekey = try XCTUnwrap(try childRekey?.childRekey(), "no child-rekey event; log:\n\(lab.log(lab.l))")
        XCTAssertEqual(rekey.ikeSA.name, "tun")
        XCTAssertEqual(rekey.old.name, "tun")
        XCTAssertEqual(rekey.new.name, "tun")
        XCTAssertNotEqual(rekey.old.spiIn, rekey.new.spiIn)
        XCTAssertNotEqual(rekey.old.uniqueId, rekey.new.uniqueId)
        let ikeRekeyEvent = await events.wait(timeout: .seconds(15)) { $0.name == "ike-rekey" }
        let ikeRekey = try XCTUnwrap(try ikeRekeyEvent?.ikeRekey(), "no ike-rekey event")
        XCTAssertNotEqual(ikeRekey.old.uniqueId, ikeRekey.new.uniqueId)
        XCTAssertEqual(ikeRekey.new.state, .established)
        XCTAssertTrue(lab.pingAcross(count: 3), "traffic failed after rekey")
        // A rekey is not a down event.
        XCTAssertFalse(events.all.contains { $0.name == "child-updown" && (try? $0.upDown())??.up == false })
    }

    func testLostPeerIsNoticedWithinRetransmitBound() async throws {
        // The rendered retransmit settings promise: a dead peer is declared dead within
        // dpd_delay + retransmitGiveUpSeconds. Kill the responder and measure.
        let lab = try await makeLab()
        let lv = try lab.l.vici
        let events = EventRecorder(try await lv.subscribe(["ike-updown"]))
        let dpdDelay = 2
        for (a, b) in [(lab.l, lab.r), (lab.r, lab.l)] {
            var c = CharonLab.connection(version: .ikev2, from: a, to: b, dpdDelay: dpdDelay)
            c.children[0].dpdAction = .clear
            try await a.vici.loadConnection(c)
            try await a.vici.loadSharedKey(id: "k", secret: "wvt.dpd.psk", owners: [a.address, b.address])
        }
        try await lv.initiate(child: "tun", timeoutMs: 10_000)
        let clock = ContinuousClock()
        let t0 = clock.now
        lab.r.kill9()
        let bound = Double(dpdDelay) + lab.l.config.retransmitGiveUpSeconds
        let down = await events.wait(timeout: .seconds(bound + 5)) { $0.name == "ike-updown" && (try? $0.upDown())??.up == false }
        let elapsed = clock.now - t0
        XCTAssertNotNil(down, "peer loss not noticed within \(bound + 5) s; log:\n\(lab.log(lab.l))")
        print("MEASURE peer killed -> ike-updown down: \(ms(elapsed)) ms (bound \(bound) s)")
        XCTAssertLessThanOrEqual(ms(elapsed), (bound + 1) * 1000)
        XCTAssertGreaterThanOrEqual(ms(elapsed), lab.l.config.retransmitGiveUpSeconds * 1000 - 500,
                                    "gave up faster than the retransmit schedule allows")
        let sas = try await lv.listSAs()
        XCTAssertTrue(sas.isEmpty, "dead peer's SA still listed")
    }

    // MARK: disconnects

    func testKill9IsReportedCleanly() async throws {
        let lab = try await makeLab()
        let v = try lab.l.vici
        let events = EventRecorder(try await v.subscribe(["ike-updown"]))
        // A command in flight while charon dies: initiate toward a peer that never answers.
        var c = CharonLab.connection(name: "void", version: .ikev2, from: lab.l, to: lab.r)
        c.remoteAddrs = ["203.0.113.99"]
        try await v.loadConnection(c)
        let pending = Task { try await v.initiate(child: "void", timeoutMs: 20_000) }
        try await Task.sleep(for: .milliseconds(300))
        let clock = ContinuousClock()
        let t0 = clock.now
        lab.l.kill9()
        do {
            _ = try await pending.value
            XCTFail("initiate returned although charon was killed")
        } catch ViciError.disconnected(let path, let reason) {
            XCTAssertEqual(path, lab.l.config.viciSocketPath)
            XCTAssertFalse(reason.isEmpty)
        }
        print("MEASURE kill -9 -> pending command failed: \(ms(clock.now - t0)) ms")
        let finished = await events.waitFinished()
        XCTAssertTrue(finished, "event stream did not finish after charon died")
        XCTAssertFalse(v.isConnected)
        guard case .disconnected = v.disconnectError else {
            return XCTFail("disconnectError is \(String(describing: v.disconnectError))")
        }
        do {
            _ = try await v.version()
            XCTFail("request on a dead connection succeeded")
        } catch ViciError.disconnected {}
        // The stale socket file: reconnecting names the path and the reason.
        do {
            _ = try ViciClient(socketPath: lab.l.config.viciSocketPath)
            XCTFail("connected to a dead charon")
        } catch let error as ViciError {
            guard case .connectFailed(let path, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, lab.l.config.viciSocketPath)
            XCTAssertTrue(reason.lowercased().contains("refused"), reason)
            XCTAssertTrue(error.description.contains(path))
        }
    }

    func testConnectToMissingSocketNamesThePath() {
        let path = "/tmp/wvt-missing-\(getpid())/charon.vici"
        XCTAssertThrowsError(try ViciClient(socketPath: path)) { error in
            guard case ViciError.connectFailed(let p, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path)
            XCTAssertTrue(reason.contains("No such file"), reason)
            XCTAssertTrue("\(error)".contains(path))
        }
    }

    func testCloseFinishesSubscriptionsAndFailsLaterCalls() async throws {
        let lab = try await makeLab()
        let v = try lab.l.vici
        let events = EventRecorder(try await v.subscribe(["ike-updown", "child-updown"]))
        v.close()
        let finished = await events.waitFinished()
        XCTAssertTrue(finished)
        do {
            _ = try await v.stats()
            XCTFail("request after close succeeded")
        } catch ViciError.disconnected(_, let reason) {
            XCTAssertEqual(reason, "closed by client")
        }
        // charon itself is fine: a new client works.
        let fresh = try ViciClient(socketPath: lab.l.config.viciSocketPath)
        defer { fresh.close() }
        let ver = try await fresh.version()
        XCTAssertEqual(ver.daemon, "charon")
    }

    func testClientsDoNotLeakThreadsOrDescriptors() async throws {
        let lab = try await makeLab()
        func count(_ dir: String) -> Int { (try? FileManager.default.contentsOfDirectory(atPath: dir).count) ?? -1 }
        let threads0 = count("/proc/self/task"), fds0 = count("/proc/self/fd")
        for i in 0..<30 {
            let c = try ViciClient(socketPath: lab.l.config.viciSocketPath)
            let events = try await c.subscribe(["ike-updown"])
            _ = try await c.version()
            if i % 2 == 0 { c.close() } // the others are closed by deinit
            _ = events
        }
        var threads = 0, fds = 0
        let deadline = ContinuousClock.now.advanced(by: .seconds(3))
        repeat {
            try await Task.sleep(for: .milliseconds(20))
            threads = count("/proc/self/task")
            fds = count("/proc/self/fd")
        } while (threads > threads0 || fds > fds0) && ContinuousClock.now < deadline
        XCTAssertLessThanOrEqual(threads, threads0, "reader threads leaked")
        XCTAssertLessThanOrEqual(fds, fds0, "descriptors leaked")
    }

    func testUnsubscribedEventsAreUnregistered() async throws {
        let lab = try await makeLab()
        let v = try lab.l.vici
        var recorder: EventRecorder? = EventRecorder(try await v.subscribe(["ike-updown"]))
        let keep = EventRecorder(try await v.subscribe(["child-updown"]))
        XCTAssertNotNil(recorder)
        recorder = nil // cancels its task, terminating the stream
        try await Task.sleep(for: .milliseconds(50))
        try await lab.loadTunnel(version: .ikev2) // runs the pending unregistration first
        try await v.initiate(child: "tun", timeoutMs: 10_000)
        let up = await keep.wait { $0.name == "child-updown" }
        XCTAssertNotNil(up, "remaining subscriber lost its events")
        XCTAssertFalse(keep.all.contains { $0.name == "ike-updown" })
        XCTAssertEqual(v.malformedEventCount, 0)
    }

    // MARK: xfrm variant

    func testXfrmVariantConfigStartsAndAcceptsConnections() async throws {
        // No kernel ESP here, so no SA can be installed; this checks that charon parses
        // the rendered file, loads exactly the listed plugins and serves vici.
        let lab = try CharonLab(backend: .xfrm)
        self.lab = lab
        try await lab.l.start()
        let v = try lab.l.vici
        let stats = try await v.stats()
        XCTAssertEqual(Set(stats.plugins).subtracting(["charon"]), Set(CharonInstanceConfig.xfrmPlugins))
        var c = CharonLab.connection(version: .ikev2, from: lab.l, to: lab.r)
        c.children[0].ifIdIn = 42
        c.children[0].ifIdOut = 42
        try await v.loadConnection(c)
        let names = try await v.connectionNames()
        XCTAssertEqual(names, ["tun"])
        let rules = try runCommand(["ip", "-n", CharonLab.left, "rule"])
        XCTAssertTrue(rules.contains("fwmark 0x57520000 lookup 2220"), rules)
        let links = try runCommand(["ip", "-n", CharonLab.left, "link"])
        XCTAssertFalse(links.contains("ipsec0"), "xfrm variant must not create a libipsec TUN")
    }
}
