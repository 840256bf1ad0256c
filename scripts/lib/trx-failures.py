"""Prints every failed test in the given .trx files: its fully qualified name and the first lines of its error
message. scripts/test.sh runs it before its summary line, because CI shows only the tail of the output and the
per-test failure output scrolls out of it."""
import sys
import xml.etree.ElementTree as ET

NS = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"
MESSAGE_LINES = 6


def failures(path):
    root = ET.parse(path).getroot()
    # testName is xunit's display name; the class and method come from the test's definition.
    methods = {}
    for test in root.iter(NS + "UnitTest"):
        method = test.find(NS + "TestMethod")
        if method is not None:
            methods[test.get("id")] = (method.get("className", ""), method.get("name", ""))
    for result in root.iter(NS + "UnitTestResult"):
        if result.get("outcome") != "Failed":
            continue
        name = result.get("testName", "?")
        class_name, method = methods.get(result.get("testId"), ("", ""))
        if class_name and not name.startswith(class_name + "."):
            name = f"{class_name}.{method} ({name})" if name != method else f"{class_name}.{method}"
        message = result.findtext(f"{NS}Output/{NS}ErrorInfo/{NS}Message") or "(no message)"
        yield name, message.strip().splitlines()


def main(paths):
    found = [f for path in paths for f in failures(path)]
    if not found:
        return
    print(f"failed tests ({len(found)}):")
    for name, lines in found:
        print(f"  {name}")
        for line in lines[:MESSAGE_LINES]:
            print(f"      {line}")
        if len(lines) > MESSAGE_LINES:
            print(f"      ... ({len(lines) - MESSAGE_LINES} more lines)")


if __name__ == "__main__":
    main(sys.argv[1:])
