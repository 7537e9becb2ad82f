"""Started by the tests on demand; see the fixture below."""
