//! Tests on PVs that lvm2 itself wrote (the oracle), and on damaged ones.

mod corrupt;
mod lvm2;
