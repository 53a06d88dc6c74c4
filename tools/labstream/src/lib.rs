//! Streaming an image to a lab host: `rescue receive` there, `rescue image
//! SRC rescue://HOST:PORT/NAME` on the appliance.
//!
//! - [`code`]: the pairing code and the key derived from it.
//! - [`channel`]: the Noise NNpsk0 handshake and the encrypted channel.
//! - [`frame`]: the session's messages and their (never panicking) parser.
//! - [`store`]: the receiver's directory: safe names, the files of an image.
//! - [`receiver`]: the listener and one session per sender.
//! - [`sender`]: the engine's [`imaging::Sink`] that streams, and the send.
//! - [`tree`]: the receiver's side of a tree of files (`vmfs extract`).
//! - [`treesend`]: the sender's side: a [`vmfs::extract::Destination`] that streams.
//! - [`cli`]: `rescue receive`, and the sending side of `rescue image`.

pub mod channel;
pub mod cli;
pub mod code;
pub mod frame;
pub mod receiver;
pub mod sender;
pub mod store;
pub mod tree;
pub mod treesend;

pub use code::PairingCode;
pub use receiver::{ReceiveOptions, Receiver, ServeReport, SessionEnd};
pub use sender::{send, SendJob, SendReport, Target};
