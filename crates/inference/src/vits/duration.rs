//! Stochastic duration predictor of VITS (`StochasticDurationPredictor` in Piper's training
//! code), run in reverse only: noise -> flows (conv flows with rational-quadratic splines,
//! flips, the elementwise affine flow) -> log durations.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{conv1d, DdsConv, TapConv1d};
use super::spline::inverse_rq_spline;
use super::VitsConfig;

const NUM_BINS: usize = 10;
const TAIL_BOUND: f32 = 5.0;

struct ConvFlow {
    pre: TapConv1d,
    convs: DdsConv,
    proj: TapConv1d,
    filter: usize,
}

impl ConvFlow {
    fn load(vb: VarBuilder, filter: usize, kernel: usize) -> Result<Self> {
        Ok(Self {
            pre: conv1d(vb.pp("pre"), 1, filter, 1, 1)?,
            convs: DdsConv::load(vb.pp("convs"), filter, kernel, 3)?,
            proj: conv1d(vb.pp("proj"), filter, 3 * NUM_BINS - 1, 1, 1)?,
            filter,
        })
    }

    /// `z`: `[1, 2, t]`; the second channel is transformed, conditioned on the first and `g`.
    fn reverse(&self, z: &Tensor, g: &Tensor) -> Result<Tensor> {
        let x0 = z.narrow(1, 0, 1)?;
        let x1: Vec<f32> = z.narrow(1, 1, 1)?.flatten_all()?.to_vec1()?;
        let h = self.proj.forward(&self.convs.forward(&self.pre.forward(&x0)?, Some(g))?)?;
        let params: Vec<Vec<f32>> = h.squeeze(0)?.t()?.to_vec2()?; // [t][3 * bins - 1]
        let scale = (self.filter as f32).sqrt();
        let out: Vec<f32> = x1
            .iter()
            .zip(&params)
            .map(|(&x, p)| {
                let widths: Vec<f32> = p[..NUM_BINS].iter().map(|v| v / scale).collect();
                let heights: Vec<f32> = p[NUM_BINS..2 * NUM_BINS].iter().map(|v| v / scale).collect();
                inverse_rq_spline(x, &widths, &heights, &p[2 * NUM_BINS..], TAIL_BOUND)
            })
            .collect();
        let x1 = Tensor::from_vec(out, (1, 1, x1.len()), z.device())?;
        Tensor::cat(&[&x0, &x1], 1)
    }
}

/// Swaps the two channels (`Flip` over a 2-channel tensor).
fn flip2(z: &Tensor) -> Result<Tensor> {
    Tensor::cat(&[&z.narrow(1, 1, 1)?, &z.narrow(1, 0, 1)?], 1)
}

pub struct DurationPredictor {
    pre: TapConv1d,
    convs: DdsConv,
    proj: TapConv1d,
    cond: Option<TapConv1d>,
    /// Conv flows in the order they run in reverse (flows.7, .5, .3; flows.1 is never used).
    flows: Vec<ConvFlow>,
    affine_m: Tensor,    // [1, 2, 1]
    affine_logs: Tensor, // [1, 2, 1]
}

impl DurationPredictor {
    pub fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self> {
        let (c, f, k) = (cfg.hidden_channels, cfg.dp_filter_channels, cfg.dp_kernel_size);
        let mut flows = Vec::new();
        for i in (3..=2 * cfg.dp_n_flows - 1).rev().step_by(2) {
            flows.push(ConvFlow::load(vb.pp(format!("flows.{i}")), f, k)?);
        }
        let affine = vb.pp("flows.0");
        Ok(Self {
            pre: conv1d(vb.pp("pre"), c, f, 1, 1)?,
            convs: DdsConv::load(vb.pp("convs"), f, k, 3)?,
            proj: conv1d(vb.pp("proj"), f, f, 1, 1)?,
            cond: if cfg.gin_channels > 0 { Some(conv1d(vb.pp("cond"), cfg.gin_channels, f, 1, 1)?) } else { None },
            flows,
            affine_m: affine.get((2, 1), "m")?.unsqueeze(0)?,
            affine_logs: affine.get((2, 1), "logs")?.unsqueeze(0)?,
        })
    }

    /// Log durations `[1, 1, t]` for encoder output `x` `[1, c, t]`; `noise_w` scales the noise.
    pub fn reverse(&self, x: &Tensor, g: Option<&Tensor>, noise_w: f32) -> Result<Tensor> {
        let mut h = self.pre.forward(x)?;
        if let (Some(cond), Some(g)) = (&self.cond, g) {
            h = h.broadcast_add(&cond.forward(g)?)?;
        }
        let h = self.proj.forward(&self.convs.forward(&h, None)?)?;
        let t = x.dim(2)?;
        let mut z = if noise_w == 0.0 {
            Tensor::zeros((1, 2, t), candle_core::DType::F32, x.device())?
        } else {
            (Tensor::randn(0f32, 1f32, (1, 2, t), x.device())? * noise_w as f64)?
        };
        for flow in &self.flows {
            z = flow.reverse(&flip2(&z)?, &h)?;
        }
        z = flip2(&z)?;
        let z = z.broadcast_sub(&self.affine_m)?.broadcast_mul(&self.affine_logs.neg()?.exp()?)?;
        z.narrow(1, 0, 1)
    }
}
