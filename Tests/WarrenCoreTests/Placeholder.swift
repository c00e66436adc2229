import XCTest
final class WarrenCoreTestsPlaceholder: XCTestCase { func testBuilds() {} }
