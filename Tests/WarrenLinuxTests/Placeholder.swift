import XCTest
final class WarrenLinuxTestsPlaceholder: XCTestCase { func testBuilds() {} }
