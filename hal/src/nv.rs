//! High-water marks in TPM non-volatile memory: a number that only ever
//! rises, kept where deleting or restoring files on the camera's disk
//! cannot lower it.
//!
//! The camera keeps the newest recipient-set version it has accepted so
//! that an older set, though genuinely signed by the owner, is refused (a
//! rollback would give a removed consumer the video again). On disk alone
//! that floor falls to whoever takes the SD card, deletes the file and puts
//! an old set back. In the TPM, it does not: the index is 8 bytes of
//! ordinary NV memory (big-endian u64) in the owner hierarchy, written
//! only by this code and only upward.
//!
//! Why ordinary memory and not a TPM counter (`TPM_NT_COUNTER`): a counter
//! moves by one per increment and starts, at its first increment, at the
//! highest value any counter of that TPM ever held, so it cannot hold a
//! version that jumps from 2 to 7, and pairing it with a value on disk
//! needs a MAC the disk thief cannot forge. Ordinary memory with
//! "only upward" in the one program that writes it is enough against the
//! disk thief, who cannot run TPM commands; a thief who runs code as root
//! on the camera itself can rewrite it, as they could undefine a counter
//! on a TPM whose owner authorisation is empty (`docs/design/camera.md`).

use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::NvIndexType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::structures::{MaxNvBuffer, NvPublicBuilder};
use tss_esapi::Context;

use crate::tpm::{handle_exists, TpmError, TpmKey};

/// The NV index of the recipient-set floor (owner range 0x01000000..=0x013fffff).
pub const RECIPIENT_FLOOR_INDEX: u32 = 0x0100_5EA1;

const SIZE: u16 = 8;

fn cmd(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Command { op, source }
}

fn nv_tpm_handle(index: u32) -> Result<NvIndexTpmHandle, TpmError> {
    NvIndexTpmHandle::new(index).map_err(cmd("name the NV index"))
}

/// The ESYS handle of an existing index; closed by the caller.
fn open(ctx: &mut Context, index: u32) -> Result<NvIndexHandle, TpmError> {
    let tpm = nv_tpm_handle(index)?;
    ctx.execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(tpm)))
        .map(NvIndexHandle::from)
        .map_err(cmd("open the NV index"))
}

fn close(ctx: &mut Context, handle: NvIndexHandle) {
    let mut object = ObjectHandle::from(handle);
    let _ = ctx.tr_close(&mut object);
}

fn read(ctx: &mut Context, handle: NvIndexHandle) -> Result<u64, TpmError> {
    let data = ctx
        .execute_with_nullauth_session(|c| c.nv_read(NvAuth::NvIndex(handle), handle, SIZE, 0))
        .map_err(cmd("read the NV index"))?;
    let bytes: [u8; 8] = data.value().try_into().map_err(|_| TpmError::Command {
        op: "read the NV index",
        source: tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongParamSize),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn write(ctx: &mut Context, handle: NvIndexHandle, value: u64) -> Result<(), TpmError> {
    let data =
        MaxNvBuffer::try_from(value.to_be_bytes().to_vec()).map_err(cmd("write the NV index"))?;
    ctx.execute_with_nullauth_session(|c| c.nv_write(NvAuth::NvIndex(handle), handle, data, 0))
        .map_err(cmd("write the NV index"))
}

fn define(ctx: &mut Context, index: u32) -> Result<NvIndexHandle, TpmError> {
    let attributes = NvIndexAttributesBuilder::new()
        .with_nv_index_type(NvIndexType::Ordinary)
        .with_owner_read(true)
        .with_owner_write(true)
        .with_auth_read(true)
        .with_auth_write(true)
        // Cameras lose power abruptly; a lockout would brick them.
        .with_no_da(true)
        .build()
        .map_err(cmd("define the NV index"))?;
    let public = NvPublicBuilder::new()
        .with_nv_index(nv_tpm_handle(index)?)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(attributes)
        .with_data_area_size(usize::from(SIZE))
        .build()
        .map_err(cmd("define the NV index"))?;
    ctx.execute_with_nullauth_session(|c| c.nv_define_space(Provision::Owner, None, public))
        .map_err(cmd("define the NV index"))
}

/// The mark at `index`, if the index exists.
fn floor(ctx: &mut Context, index: u32) -> Result<Option<u64>, TpmError> {
    if !handle_exists(ctx, index)? {
        return Ok(None);
    }
    let handle = open(ctx, index)?;
    let value = read(ctx, handle);
    close(ctx, handle);
    value.map(Some)
}

/// Raises the mark at `index` to `value` if it is lower (defining the
/// index the first time); returns the mark now held.
fn raise(ctx: &mut Context, index: u32, value: u64) -> Result<u64, TpmError> {
    let (handle, held) = if handle_exists(ctx, index)? {
        let handle = open(ctx, index)?;
        match read(ctx, handle) {
            Ok(held) => (handle, Some(held)),
            Err(e) => {
                close(ctx, handle);
                return Err(e);
            }
        }
    } else {
        (define(ctx, index)?, None)
    };
    let result = match held {
        Some(held) if held >= value => Ok(held),
        _ => write(ctx, handle, value).map(|()| value),
    };
    close(ctx, handle);
    result
}

impl TpmKey {
    /// The high-water mark at NV index `index`, if it has been set.
    pub fn nv_floor(&self, index: u32) -> Result<Option<u64>, TpmError> {
        self.run(move |ctx, _| floor(ctx, index))
    }

    /// Raises the high-water mark at `index` to `value` unless it is
    /// higher already; returns the mark now held.
    pub fn nv_raise(&self, index: u32, value: u64) -> Result<u64, TpmError> {
        self.run(move |ctx, _| raise(ctx, index, value))
    }
}
