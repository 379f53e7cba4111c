//! What the WebRTC engine refuses, and why. The engine knows nothing of HTTP: the HTTP layer maps
//! each variant to a status and an error code in one place (`From<EngineError> for HttpError`, in
//! [`super::http`]).

/// An engine request that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The node has `rtc_max_peers` peer connections already.
    #[error("at most {max} WebRTC peers")]
    TooManyPeers {
        /// The limit.
        max: usize,
    },
    /// The offer has more audio and video m-lines than `rtc_max_tracks`.
    #[error("at most {max} audio and video m-lines per peer")]
    TooManyMediaLines {
        /// The limit.
        max: usize,
    },
    /// A new peer needs an offer.
    #[error("an SDP offer is needed")]
    NoOffer,
    /// The data channel transport was offered audio or video.
    #[error("the data channel transport takes no audio or video")]
    MediaOnDataChannel,
    /// A WHIP or WHEP offer without audio or video.
    #[error("the offer has no audio or video")]
    NoMedia,
    /// An enabled audio or video m-line offers none of the codecs the SFU forwards.
    #[error("no usable codec in m-line {index} (audio: opus; video: VP8, H.264)")]
    NoUsableCodec {
        /// The m-line's index in the offer.
        index: usize,
    },
    /// The offer is not SDP that str0m parses.
    #[error("malformed SDP: {0}")]
    MalformedSdp(String),
    /// str0m refused the offer (for example, a renegotiation that changes what cannot change).
    #[error("offer refused: {0}")]
    OfferRefused(String),
    /// No peer by that id on this node (or it closed long enough ago to be forgotten).
    #[error("no such peer")]
    UnknownPeer,
    /// A `mid` that is not 1 to 16 ASCII letters and digits.
    #[error("bad mid {0:?}")]
    BadMid(String),
    /// `subscribe` names an m-line on which the server does not send.
    #[error("m-line {mid} does not receive media from the server")]
    NotAReceiver {
        /// The m-line.
        mid: String,
    },
    /// `subscribe` names a track that is not in the peer's room.
    #[error("no such track in this room")]
    UnknownTrack,
    /// `subscribe` puts a track on an m-line of the other kind.
    #[error("m-line {mid} is {line} but the track is {track}")]
    KindMismatch {
        /// The m-line.
        mid: String,
        /// Its kind (`audio`, `video`).
        line: &'static str,
        /// The track's kind.
        track: &'static str,
    },
    /// `layers` names an m-line that receives nothing from the server.
    #[error("no receive m-line {mid}")]
    NoReceiveLine {
        /// The m-line.
        mid: String,
    },
    /// `layers` asks for a simulcast layer the m-line's track does not have.
    #[error("the track on m-line {mid} has no layer {rid:?}")]
    NoSuchLayer {
        /// The m-line.
        mid: String,
        /// The layer asked for.
        rid: String,
    },
    /// The engine's own ICE candidate is unusable (the configured address): a server fault.
    #[error("the server's ICE candidate is unusable: {0}")]
    LocalCandidate(String),
    /// The node mixes audio for `max_mixed_rooms` rooms or `max_mixed_participants` receivers.
    #[error("this node mixes audio for at most {max} {what}")]
    MixerFull {
        /// `rooms` or `participants`.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The engine has stopped (the node is shutting down).
    #[error("WebRTC stopped")]
    Stopped,
    /// The engine failed while handling this request (and dropped what it concerned).
    #[error("the WebRTC engine failed on this request")]
    Failed,
}
