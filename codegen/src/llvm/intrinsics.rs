//! NVVM intrinsic declarations. An `llvm.*` name LLVM does not know passes the verifier and
//! becomes an `.extern .func` that only ptxas rejects, so every name is looked up in this LLVM
//! when it is declared and an unknown one is an error here.

use inkwell::intrinsics::Intrinsic;
use inkwell::module::Module;
use inkwell::types::BasicTypeEnum;
use inkwell::values::FunctionValue;

use crate::CodegenError;

pub fn declare<'ctx>(
    module: &Module<'ctx>,
    name: &str,
    overloads: &[BasicTypeEnum<'ctx>],
) -> Result<FunctionValue<'ctx>, CodegenError> {
    let unknown = || CodegenError::UnknownIntrinsic(name.to_string());
    let intrinsic = Intrinsic::find(name).ok_or_else(unknown)?;
    intrinsic.get_declaration(module, overloads).ok_or_else(unknown)
}

#[cfg(test)]
mod tests {
    use inkwell::context::Context;

    use super::*;

    #[test]
    fn known_names_declare_and_unknown_names_fail() {
        let ctx = Context::create();
        let module = ctx.create_module("m");
        assert!(declare(&module, "llvm.nvvm.mma.m16n8k16.row.col.bf16", &[]).is_ok());
        let p3 = ctx.ptr_type(inkwell::AddressSpace::from(3)).into();
        assert!(declare(&module, "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.trans.b16", &[p3]).is_ok());
        let err = declare(&module, "llvm.nvvm.mma.m16n8k16.row.col.bf17", &[]).unwrap_err();
        assert!(matches!(err, CodegenError::UnknownIntrinsic(_)));
    }
}
