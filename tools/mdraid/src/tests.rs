//! Tests on whole member images built by the test writer, with mdadm
//! --examine as the independent reference for the superblocks.

mod array_verifying;
mod common;
mod mdadm;
mod props;
mod scanning;
mod verifying;
