import XCTest
final class WarrenRPCTestsPlaceholder: XCTestCase { func testBuilds() {} }
