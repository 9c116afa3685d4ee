//! The generator's residual-block stages on the CPU in float32: each tile of a stage (split and
//! run in parallel by `generator::tiled`) runs channels-last through the Winograd convolutions
//! of `winograd.rs` on one thread: one hand-off per stage instead of one per convolution, and
//! each tile's intermediates stay in its core's cache.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::with_values;
use super::winograd::{Scratch, WinogradConv};
use super::ResBlockKind;

/// The residual blocks' leaky ReLU slope.
const SLOPE: f32 = 0.1;

/// A residual block's convolutions in Winograd form: per dilation, the first and, for kind
/// "1", the second.
pub struct FastResBlock {
    convs: Vec<(WinogradConv, Option<WinogradConv>)>,
}

impl FastResBlock {
    /// `None` off the CPU, or where a convolution's shape is not covered (see [`WinogradConv::new`]).
    pub fn load(
        vb: VarBuilder,
        kind: ResBlockKind,
        ch: usize,
        kernel: usize,
        dilations: &[usize],
    ) -> Result<Option<Self>> {
        let conv = |name: String, dilation: usize| -> Result<Option<WinogradConv>> {
            let vb = vb.pp(name);
            let weight = vb.get((ch, ch, kernel), "weight")?;
            if !weight.device().is_cpu() {
                return Ok(None);
            }
            let bias = vb.get(ch, "bias")?.to_vec1::<f32>()?;
            Ok(WinogradConv::new(&weight.flatten_all()?.to_vec1()?, &bias, (ch, ch, kernel), dilation))
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
    let rows = with_values(x, |values| channels_last(values, n, 0..n))?;
    let mut sum = vec![0.0f32; n * channels];
    BUFFERS.with_borrow_mut(|(y, buffers)| {
        for block in blocks {
            block.forward_into(&rows, n, y, buffers);
            sum.iter_mut().zip(y.iter()).for_each(|(s, &v)| *s += v);
        }
    });
    let scale = 1.0 / blocks.len() as f32;
    sum.iter_mut().for_each(|s| *s *= scale);
    Tensor::from_vec(channels_first(&sum, channels), (1, channels, n), x.device())
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
