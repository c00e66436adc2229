import XCTest
final class WarrenAgentTestsPlaceholder: XCTestCase { func testBuilds() {} }
