// JSONValueEncoder / JSONValueDecoder and the DecodingError → -32602 mapping.

import Foundation
import XCTest
@testable import WarrenRPC

final class CodingTests: XCTestCase {
    let decoder = JSONValueDecoder()
    let encoder = JSONValueEncoder()

    func decodeError<T: Decodable>(_ type: T.Type, _ value: JSONValue) -> RPCError? {
        do {
            _ = try decoder.decode(T.self, from: value)
            XCTFail("decoding should fail")
            return nil
        } catch let error as DecodingError {
            return RPCError(decodingError: error)
        } catch {
            XCTFail("unexpected error \(error)")
            return nil
        }
    }

    func testRoundTripNestedStruct() throws {
        let params = try decoder.decode(DynamicVpnParams.self, from: sampleVpnParams)
        XCTAssertEqual(params.ipsecPairingA.hashAlg, .sha256)
        XCTAssertEqual(params.ipsecPairingA.ikeVersion, .v2)
        XCTAssertEqual(params.bgpPairingA.localAsn, 65000)
        XCTAssertNil(params.bgpPairingA.peerIp)
        XCTAssertEqual(params.localSubnets.map(\.text), ["10.0.1.0/24", "10.0.2.0/24"])
        let encoded = try encoder.encode(params)
        XCTAssertEqual(encoded, sampleVpnParams)
        XCTAssertEqual(try decoder.decode(DynamicVpnParams.self, from: encoded), params)
    }

    func testCustomContainersRoundTrip() throws {
        let value: JSONValue = ["kind": "box", "geometry": ["size": 3]]
        let shape = try decoder.decode(CustomShape.self, from: value)
        XCTAssertEqual(shape.size, 3)
        XCTAssertFalse(shape.extra)
        XCTAssertEqual(try encoder.encode(shape), ["kind": "box", "geometry": ["size": 3], "extra": false])
    }

    func testLeafConventions() throws {
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        XCTAssertEqual(try encoder.encode(date), "2023-11-14T22:13:20Z")
        XCTAssertEqual(try decoder.decode(Date.self, from: "2023-11-14T22:13:20Z"), date)
        let precise = Date(timeIntervalSince1970: 1_700_000_000.25)
        let text = try encoder.encode(precise)
        XCTAssertEqual(text, "2023-11-14T22:13:20.250Z")
        XCTAssertEqual(try decoder.decode(Date.self, from: text).timeIntervalSince1970, 1_700_000_000.25, accuracy: 0.001)
        XCTAssertEqual(try encoder.encode(URL(string: "https://example.com/x")!), "https://example.com/x")
        XCTAssertEqual(try encoder.encode(UInt8(7)), 7)
        XCTAssertEqual(try encoder.encode([1.5, 2]), [1.5, 2.0])
        XCTAssertEqual(try encoder.encode(["k": [1, 2]]), ["k": [1, 2]])
        XCTAssertEqual(try encoder.encode(Optional<Int>.none), nil)
        XCTAssertEqual(try decoder.decode(Int.self, from: .double(4)), 4)
        XCTAssertEqual(try decoder.decode(Double.self, from: .int(4)), 4)
        XCTAssertEqual(try decoder.decode([String: Int].self, from: ["a": 1]), ["a": 1])
        XCTAssertEqual(try decoder.decode([Int?].self, from: [1, nil]), [1, nil])
        XCTAssertEqual(try encoder.encode(EmptyResult()), [:])
        XCTAssertEqual(try decoder.decode(JSONValue.self, from: ["x": [1]]), ["x": [1]])
    }

    func testEncodingRefusesWhatJSONCannotHold() {
        XCTAssertThrowsError(try encoder.encode(Double.nan))
        XCTAssertThrowsError(try encoder.encode(["x": Double.infinity]))
        XCTAssertThrowsError(try encoder.encode(UInt64.max))
        XCTAssertEqual(try encoder.encode(UInt64(Int64.max)), .int(Int64.max))
    }

    // MARK: error paths

    func testMissingNestedFieldNamesThePath() throws {
        var params = sampleVpnParams
        params["ipsecPairingA"]?["peerIp"] = nil
        let error = try XCTUnwrap(decodeError(DynamicVpnParams.self, params))
        XCTAssertEqual(error.code, -32602)
        XCTAssertEqual(error.message, "Invalid params")
        XCTAssertEqual(error.data, ["field": "ipsecPairingA.peerIp", "reason": "missing"])
    }

    func testTypeMismatchNamesThePath() throws {
        var params = sampleVpnParams
        params["bgpPairingA"]?["localAsn"] = "65000"
        let error = try XCTUnwrap(decodeError(DynamicVpnParams.self, params))
        XCTAssertEqual(error.field, "bgpPairingA.localAsn")
        XCTAssertEqual(error.reason, "expected an integer, got a string")
    }

    func testArrayIndexAndCustomValidationMessage() throws {
        var params = sampleVpnParams
        params["localSubnets"] = ["10.0.1.0/24", "10.0.2.0/24", "banana"]
        let error = try XCTUnwrap(decodeError(DynamicVpnParams.self, params))
        XCTAssertEqual(error.field, "localSubnets[2]")
        XCTAssertEqual(error.reason, "not an IPv4 CIDR such as 10.0.0.0/24")

        params["localSubnets"] = ["10.0.1.0/24", 7]
        XCTAssertEqual(decodeError(DynamicVpnParams.self, params)?.data, ["field": "localSubnets[1]", "reason": "expected a string, got an integer"])
    }

    func testOutOfRangeNullAndEnumErrors() throws {
        var params = sampleVpnParams
        params["bgpPairingA"]?["localAsn"] = .int(1 << 40)
        var error = try XCTUnwrap(decodeError(DynamicVpnParams.self, params))
        XCTAssertEqual(error.field, "bgpPairingA.localAsn")
        XCTAssertEqual(error.reason, "number 1099511627776 does not fit in UInt32")

        params = sampleVpnParams
        params["name"] = nil
        params["name"] = .null
        error = try XCTUnwrap(decodeError(DynamicVpnParams.self, params))
        XCTAssertEqual(error.field, "name")
        XCTAssertEqual(error.reason, "expected a string, got null")

        params = sampleVpnParams
        params["ipsecPairingA"]?["hashAlg"] = "md5"
        error = try XCTUnwrap(decodeError(DynamicVpnParams.self, params))
        XCTAssertEqual(error.field, "ipsecPairingA.hashAlg")
        XCTAssertTrue(error.reason?.contains("md5") ?? false, error.description)

        params = sampleVpnParams
        params["ipsecPairingA"] = "not an object"
        error = try XCTUnwrap(decodeError(DynamicVpnParams.self, params))
        XCTAssertEqual(error.field, "ipsecPairingA")
        XCTAssertEqual(error.reason, "expected an object, got a string")

        error = try XCTUnwrap(decodeError([Int].self, [1, 2.5]))
        XCTAssertEqual(error.field, "[1]")
        XCTAssertEqual(error.reason, "expected an integer, got 2.5")
    }

    func testFieldPathFormatting() {
        let path: [CodingKey] = [
            JSONCodingKey(stringValue: "a"), JSONCodingKey(index: 3), JSONCodingKey(stringValue: "b"),
            JSONCodingKey(index: 0), JSONCodingKey(index: 1),
        ]
        XCTAssertEqual(RPCError.fieldPath(path), "a[3].b[0][1]")
        XCTAssertEqual(RPCError.fieldPath([]), "")
    }

    func testFoundationDecoderErrorsMapTheSameWay() throws {
        // Errors from Foundation's JSONDecoder use the same "Index N" keys.
        let data = Data(#"{"localSubnets":["10.0.0.0/8", 5]}"#.utf8)
        struct Subnets: Decodable { var localSubnets: [String] }
        do {
            _ = try JSONDecoder().decode(Subnets.self, from: data)
            XCTFail("should fail")
        } catch let error as DecodingError {
            XCTAssertEqual(RPCError(decodingError: error).field, "localSubnets[1]")
        }
    }

    func testRPCErrorConstructorsAndDescription() {
        XCTAssertEqual(RPCError.notFound(field: "router", reason: "no router r9").code, -32001)
        XCTAssertEqual(RPCError.conflict(field: "name", reason: "in use").code, -32002)
        XCTAssertEqual(RPCError.failedPrecondition(reason: "x").code, -32003)
        XCTAssertEqual(RPCError.unavailable(reason: "charon down").code, -32004)
        XCTAssertEqual(RPCError.methodNotFound("x.y").data, ["method": "x.y"])
        XCTAssertEqual(RPCError.parseError.code, -32700)
        XCTAssertNil(RPCError.parseError.data)
        XCTAssertEqual(
            RPCError.invalidParams(field: "ipsecPairingA.peerIp", reason: "not an IPv4 address").description,
            "Invalid params (-32602): ipsecPairingA.peerIp: not an IPv4 address")
        XCTAssertEqual(RPCError.invalidParams(field: nil, reason: "r").data, ["reason": "r"])
    }
}
