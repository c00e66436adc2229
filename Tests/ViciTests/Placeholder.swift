import XCTest
final class ViciTestsPlaceholder: XCTestCase { func testBuilds() {} }
