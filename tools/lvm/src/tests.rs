//! Tests on PVs that lvm2 itself wrote (the oracle), on damaged ones, and
//! of the activation flow with a fake device-mapper.

mod activation;
mod corrupt;
mod lvm2;
