//! The generator's residual-block stages on the CPU in float32: each tile of a stage (split and
//! run in parallel by `generator::tiled`) runs on one thread, channels-last through the
//! Winograd convolutions of `winograd.rs` where they cover the stage, else channels-first
//! through the direct kernel of `cpu_conv.rs`: one hand-off per stage instead of one per
//! convolution, and each tile's intermediates stay in its core's cache, in buffers reused
//! from tile to tile.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::cpu_conv::{Base, PackedConv};
use super::layers::with_values;
use super::winograd::{Scratch, WinogradConv};
use super::ResBlockKind;

/// The residual blocks' leaky ReLU slope.
const SLOPE: f32 = 0.1;

/// A residual-block convolution as a tile runs it: `conv(leaky_relu(x)) + bias (+ residual)`.
enum TileConv {
    /// Channels-last (`[len][ch]`).
    Winograd(Box<WinogradConv>),
    /// Channels-first (`[ch][len]`).
    Direct { conv: PackedConv, bias: Vec<f32> },
}

impl TileConv {
    fn apply_into(
        &self,
        x: &[f32],
        len: usize,
        (slope, residual): (f32, Option<&[f32]>),
        out: &mut Vec<f32>,
        scratch: &mut Scratch,
    ) {
        match self {
            Self::Winograd(conv) => conv.apply_into(x, len, (slope, residual), out, scratch),
            Self::Direct { conv, bias } => {
                conv.apply_serial_into(x, len, Some(slope), Base { bias: Some(bias), residual }, out)
            }
        }
    }
}

/// How a stage's tiles run its convolutions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TileKind {
    Winograd,
    Direct,
}

/// A residual block's convolutions as a tile runs them: per dilation, the first and, for kind
/// "1", the second.
pub struct FastResBlock {
    convs: Vec<(TileConv, Option<TileConv>)>,
}

impl FastResBlock {
    /// `None` off the CPU, or for [`TileKind::Winograd`] where a convolution's shape is not
    /// covered (see [`WinogradConv::new`]).
    pub fn load(
        vb: VarBuilder,
        (kind, tile): (ResBlockKind, TileKind),
        ch: usize,
        kernel: usize,
        dilations: &[usize],
    ) -> Result<Option<Self>> {
        let conv = |name: String, dilation: usize| -> Result<Option<TileConv>> {
            let vb = vb.pp(name);
            let weight = vb.get((ch, ch, kernel), "weight")?;
            if !weight.device().is_cpu() {
                return Ok(None);
            }
            let bias = vb.get(ch, "bias")?.to_vec1::<f32>()?;
            let weight = weight.flatten_all()?.to_vec1()?;
            Ok(match tile {
                TileKind::Winograd => WinogradConv::new(&weight, &bias, (ch, ch, kernel), dilation)
                    .map(|c| TileConv::Winograd(Box::new(c))),
                TileKind::Direct => {
                    Some(TileConv::Direct { conv: PackedConv::new(&weight, ch, ch, kernel, dilation), bias })
                }
            })
        };
        let mut convs = Vec::with_capacity(dilations.len());
        for (j, &d) in dilations.iter().enumerate() {
            let pair = match kind {
                ResBlockKind::One => (conv(format!("convs1.{j}"), d)?, Some(conv(format!("convs2.{j}"), 1)?)),
                ResBlockKind::Two => (conv(format!("convs.{j}"), d)?, None),
            };
            convs.push(match pair {
                (Some(first), None) => (first, None),
                (Some(first), Some(Some(second))) => (first, Some(second)),
                _ => return Ok(None),
            });
        }
        Ok(Some(Self { convs }))
    }

    fn channels_last(&self) -> bool {
        matches!(self.convs.first(), Some((TileConv::Winograd(_), _)))
    }

    /// `out` = the block on `x` (`[len][ch]`), with the working buffers of `buffers`.
    fn forward_into(&self, x: &[f32], len: usize, out: &mut Vec<f32>, buffers: &mut Buffers) {
        let Buffers { spare, mid, scratch } = buffers;
        for (i, (first, second)) in self.convs.iter().enumerate() {
            // The previous convolution's result is this one's input and residual.
            std::mem::swap(out, spare);
            let input: &[f32] = if i == 0 { x } else { spare };
            match second {
                Some(second) => {
                    first.apply_into(input, len, (SLOPE, None), mid, scratch);
                    second.apply_into(mid, len, (SLOPE, Some(input)), out, scratch);
                }
                None => first.apply_into(input, len, (SLOPE, Some(input)), out, scratch),
            }
        }
    }
}

/// A thread's buffers for the blocks, reused from tile to tile.
#[derive(Default)]
struct Buffers {
    spare: Vec<f32>,
    mid: Vec<f32>,
    scratch: Scratch,
}

thread_local! {
    static BUFFERS: std::cell::RefCell<(Vec<f32>, Buffers)> = std::cell::RefCell::default();
}

/// The stage's blocks on one tile `x` (`[1, ch, n]`, channels-first as the generator's tensors
/// are), averaged; the caller widens the tiles by the blocks' reach (`generator::tiled`).
pub fn run_tile(blocks: &[FastResBlock], x: &Tensor) -> Result<Tensor> {
    let (_, channels, n) = x.dims3()?;
    let last = blocks.first().is_some_and(FastResBlock::channels_last);
    let mut sum = vec![0.0f32; n * channels];
    let mut run = |rows: &[f32]| {
        BUFFERS.with_borrow_mut(|(y, buffers)| {
            for block in blocks {
                block.forward_into(rows, n, y, buffers);
                sum.iter_mut().zip(y.iter()).for_each(|(s, &v)| *s += v);
            }
        })
    };
    if last {
        run(&with_values(x, |values| channels_last(values, n, 0..n))?);
    } else {
        with_values(x, |values| run(values))?;
    }
    let scale = 1.0 / blocks.len() as f32;
    sum.iter_mut().for_each(|s| *s *= scale);
    let sum = if last { channels_first(&sum, channels) } else { sum };
    Tensor::from_vec(sum, (1, channels, n), x.device())
}

/// Columns `range` of `values` (`[ch][len]`) as `[range.len()][ch]`.
fn channels_last(values: &[f32], len: usize, range: std::ops::Range<usize>) -> Vec<f32> {
    let channels = values.len() / len;
    let n = range.len();
    let mut out = vec![0.0f32; n * channels];
    for (c, row) in values.chunks_exact(len).enumerate() {
        for (t, &v) in row[range.clone()].iter().enumerate() {
            out[t * channels + c] = v;
        }
    }
    out
}

/// `[n][ch]` as `[ch][n]`.
fn channels_first(values: &[f32], channels: usize) -> Vec<f32> {
    let n = values.len() / channels;
    let mut out = vec![0.0f32; values.len()];
    for (t, row) in values.chunks_exact(channels).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * n + t] = v;
        }
    }
    out
}
