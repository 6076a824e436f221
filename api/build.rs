//! Generates the gRPC client and server code from `proto/skiff/v1/` (the API and the node API).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(
        &["proto/skiff/v1/api.proto", "proto/skiff/v1/node.proto"],
        &["proto"],
    )?;
    Ok(())
}
