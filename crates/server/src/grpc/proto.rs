//! The code generated from `proto/smai/v1` by build.rs, and its descriptor set for reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("smai.v1");

/// The encoded `FileDescriptorSet` of the smai protos, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/smai_descriptor.bin"));
