"""Real services (Redis, PostgreSQL, Ceph's S3 gateway) started on free loopback ports for the tests."""
