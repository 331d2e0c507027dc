//! The persistent store: users, devices and bindings. SQLite (WAL) is the embedded default;
//! the interface does not assume SQLite.
