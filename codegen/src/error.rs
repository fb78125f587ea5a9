use tessera_desc::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("tile IR: {0}")]
    Ir(String),
    #[error("LLVM intrinsic `{0}` does not exist in this LLVM; refusing to emit a call ptxas would reject")]
    UnknownIntrinsic(String),
    #[error("LLVM: {0}")]
    Llvm(String),
    #[error("not supported by this version of tessera-codegen: {0}")]
    Unsupported(String),
}

impl From<inkwell::builder::BuilderError> for CodegenError {
    fn from(e: inkwell::builder::BuilderError) -> Self {
        CodegenError::Llvm(e.to_string())
    }
}
