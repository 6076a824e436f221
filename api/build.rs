//! Generates the gRPC client and server code from `proto/skiff/v1/api.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(&["proto/skiff/v1/api.proto"], &["proto"])?;
    Ok(())
}
