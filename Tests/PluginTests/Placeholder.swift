import XCTest
final class PluginTestsPlaceholder: XCTestCase { func testBuilds() {} }
