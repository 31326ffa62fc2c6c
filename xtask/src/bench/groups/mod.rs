//! The benchmark's groups, one file each: every group adds one section of the table to
//! `Bench::groups`. Rows of a group are measured side by side (see `harness::interleave`).

mod memory;
mod policy;
mod s3;
mod selection;
mod single;
mod sweep;
