//! The `berth` command line (being written).
