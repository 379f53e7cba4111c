//! VP8 through the system's libvpx (Debian `libvpx-dev`, found with pkg-config by
//! `env-libvpx-sys`, whose pre-generated bindings need no clang): I420 frames in and out, a
//! keyframe on request, resolution changes mid-stream, errors as values.
//!
//! This is the workspace's one crate with `unsafe` code: every FFI call lives here, behind
//! [`Encoder`] and [`Decoder`], each owning one libvpx context. Both are `Send` (a libvpx context
//! may move between threads; it is never shared, every method takes `&mut self`).
//!
//! Encoder settings are the realtime ones WebRTC uses: one pass, CBR, no lag, one thread, error
//! resilient, no frame dropping (a composition wants one frame per tick).

use std::os::raw::{c_int, c_long, c_uint, c_ulong};
use std::ptr;

use vpx_sys as sys;

pub mod frame;
pub use frame::I420;

/// What went wrong in libvpx or with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VpxError {
    /// The frame's size is not usable (zero, odd, too large, or planes of the wrong length).
    #[error("bad frame size {width}x{height}")]
    BadSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// libvpx refused a call; `call` names it, `code` is its `vpx_codec_err_t`.
    #[error("libvpx {call} failed: {code:?}")]
    Codec {
        /// The libvpx function.
        call: &'static str,
        /// Its error code.
        code: ErrorCode,
    },
}

/// libvpx's error codes, as values we own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Unspecified error.
    Error,
    /// Out of memory.
    Memory,
    /// The library and headers disagree.
    AbiMismatch,
    /// An unsupported feature or parameter.
    Unsupported,
    /// The stream is not VP8 or is corrupt.
    Corrupt,
    /// A parameter was invalid.
    InvalidParam,
    /// Anything else.
    Other(u32),
}

impl From<sys::vpx_codec_err_t> for ErrorCode {
    fn from(e: sys::vpx_codec_err_t) -> Self {
        use sys::vpx_codec_err_t as E;
        match e {
            E::VPX_CODEC_ERROR => Self::Error,
            E::VPX_CODEC_MEM_ERROR => Self::Memory,
            E::VPX_CODEC_ABI_MISMATCH => Self::AbiMismatch,
            E::VPX_CODEC_INCAPABLE | E::VPX_CODEC_UNSUP_FEATURE => Self::Unsupported,
            E::VPX_CODEC_UNSUP_BITSTREAM | E::VPX_CODEC_CORRUPT_FRAME => Self::Corrupt,
            E::VPX_CODEC_INVALID_PARAM => Self::InvalidParam,
            other => Self::Other(other as u32),
        }
    }
}

fn check(call: &'static str, e: sys::vpx_codec_err_t) -> Result<(), VpxError> {
    match e {
        sys::vpx_codec_err_t::VPX_CODEC_OK => Ok(()),
        e => Err(VpxError::Codec { call, code: e.into() }),
    }
}

/// The largest frame side accepted (VP8's limit is 16383).
pub const MAX_SIDE: u32 = 16383;

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Frame width (even).
    pub width: u32,
    /// Frame height (even).
    pub height: u32,
    /// Frames per second (the encoder's time base).
    pub fps: u32,
    /// Target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// At most this many frames between keyframes.
    pub keyframe_interval: u32,
}

/// One encoded VP8 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The frame, as an RTP VP8 payloader takes it.
    pub data: Vec<u8>,
    /// A keyframe.
    pub keyframe: bool,
}

/// A VP8 encoder. A frame of another size re-initializes it (the next frame is a keyframe).
pub struct Encoder {
    ctx: Box<sys::vpx_codec_ctx_t>,
    config: EncoderConfig,
    pts: i64,
}

// SAFETY: the context is owned (never shared) and libvpx keeps no thread-local state for it.
unsafe impl Send for Encoder {}

impl Encoder {
    /// A realtime one-thread encoder.
    pub fn new(config: EncoderConfig) -> Result<Self, VpxError> {
        valid_size(config.width, config.height)?;
        // SAFETY: a zeroed ctx is what vpx_codec_enc_init expects to fill in.
        let mut ctx: Box<sys::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // A zeroed config is not a valid value (its enums have no zero); libvpx's default call
        // fills every field.
        let mut cfg = std::mem::MaybeUninit::<sys::vpx_codec_enc_cfg_t>::uninit();
        // SAFETY: the call writes the whole struct when it returns OK.
        check("enc_config_default", unsafe {
            sys::vpx_codec_enc_config_default(sys::vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0)
        })?;
        // SAFETY: initialized by the successful call above.
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.g_w = config.width;
        cfg.g_h = config.height;
        cfg.g_timebase = sys::vpx_rational { num: 1, den: config.fps.clamp(1, 240) as c_int };
        cfg.g_threads = 1;
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = 1;
        cfg.g_pass = sys::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.rc_end_usage = sys::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = config.bitrate_kbps.max(30);
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_resize_allowed = 0;
        cfg.rc_min_quantizer = 4;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_sz = 1000;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.kf_mode = sys::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = config.keyframe_interval.max(1);
        // SAFETY: ctx and cfg are valid for the call; the ABI version is the bindings' own.
        check("enc_init", unsafe {
            sys::vpx_codec_enc_init_ver(
                &mut *ctx,
                sys::vpx_codec_vp8_cx(),
                &cfg,
                0,
                sys::VPX_ENCODER_ABI_VERSION as c_int,
            )
        })?;
        let mut encoder = Self { ctx, config, pts: 0 };
        // Speed over quality, as realtime WebRTC encoders run (-16..16; higher is faster).
        // SAFETY: an initialized context; VP8E_SET_CPUUSED takes one int.
        let cpu_used = sys::vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int;
        check("control(CPUUSED)", unsafe {
            sys::vpx_codec_control_(&mut *encoder.ctx, cpu_used, 8 as c_int)
        })?;
        encoder.pts = 0;
        Ok(encoder)
    }

    /// The current settings (the size follows the last frame encoded).
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Encodes one frame (a keyframe if `keyframe`); usually yields one packet.
    pub fn encode(&mut self, frame: &I420, keyframe: bool) -> Result<Vec<Encoded>, VpxError> {
        frame.check()?;
        if frame.width != self.config.width || frame.height != self.config.height {
            let config = EncoderConfig { width: frame.width, height: frame.height, ..self.config };
            *self = Self::new(config)?;
        }
        let image = frame.as_vpx_image();
        let flags = if keyframe { sys::VPX_EFLAG_FORCE_KF as sys::vpx_enc_frame_flags_t } else { 0 };
        // SAFETY: `image` points into `frame`'s planes, which outlive the call; libvpx copies
        // what it needs before returning (no lag frames).
        check("encode", unsafe {
            sys::vpx_codec_encode(&mut *self.ctx, &image, self.pts, 1, flags, sys::VPX_DL_REALTIME as c_ulong)
        })?;
        self.pts += 1;
        let mut out = Vec::new();
        let mut iter: sys::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: an initialized context; the packet is valid until the next call on it.
            let pkt = unsafe { sys::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: non-null packets from libvpx are valid; `frame` is the union member for
            // VPX_CODEC_CX_FRAME_PKT, and buf/sz describe memory libvpx owns until the next call.
            unsafe {
                if (*pkt).kind != sys::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    continue;
                }
                let f = (*pkt).data.frame;
                let data = std::slice::from_raw_parts(f.buf as *const u8, f.sz as usize).to_vec();
                out.push(Encoded { data, keyframe: f.flags & sys::VPX_FRAME_IS_KEY != 0 });
            }
        }
        Ok(out)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: initialized in `new` (a failed init never builds an Encoder).
        unsafe { sys::vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// A VP8 decoder. VP8 carries the size in every keyframe: a stream that changes size just
/// yields frames of the new size.
pub struct Decoder {
    ctx: Box<sys::vpx_codec_ctx_t>,
}

// SAFETY: as for the encoder.
unsafe impl Send for Decoder {}

impl Decoder {
    /// A one-thread decoder.
    pub fn new() -> Result<Self, VpxError> {
        // SAFETY: a zeroed ctx is what vpx_codec_dec_init expects to fill in.
        let mut ctx: Box<sys::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        let cfg = sys::vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 };
        // SAFETY: valid pointers; the ABI version is the bindings' own.
        check("dec_init", unsafe {
            sys::vpx_codec_dec_init_ver(
                &mut *ctx,
                sys::vpx_codec_vp8_dx(),
                &cfg,
                0,
                sys::VPX_DECODER_ABI_VERSION as c_int,
            )
        })?;
        Ok(Self { ctx })
    }

    /// Decodes one VP8 frame; `None` when it shows nothing (for example an alt-ref frame).
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420>, VpxError> {
        if data.is_empty() || data.len() > c_uint::MAX as usize {
            return Err(VpxError::Codec { call: "decode", code: ErrorCode::Corrupt });
        }
        // SAFETY: `data` is valid for its length during the call; libvpx copies what it keeps.
        check("decode", unsafe {
            sys::vpx_codec_decode(
                &mut *self.ctx,
                data.as_ptr(),
                data.len() as c_uint,
                ptr::null_mut(),
                0 as c_long,
            )
        })?;
        let mut last = None;
        let mut iter: sys::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: an initialized context; the image is valid until the next decode.
            let img = unsafe { sys::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: a non-null image from libvpx describes planes it owns, valid until the
            // next call on the context.
            last = Some(unsafe { I420::from_vpx_image(&*img) }?);
        }
        Ok(last)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`.
        unsafe { sys::vpx_codec_destroy(&mut *self.ctx) };
    }
}

fn valid_size(width: u32, height: u32) -> Result<(), VpxError> {
    if width == 0
        || height == 0
        || !width.is_multiple_of(2)
        || !height.is_multiple_of(2)
        || width > MAX_SIDE
        || height > MAX_SIDE
    {
        return Err(VpxError::BadSize { width, height });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
