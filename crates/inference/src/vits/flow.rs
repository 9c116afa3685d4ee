//! Residual coupling flow of VITS (`ResidualCouplingBlock`, mean-only coupling layers with a
//! WaveNet, alternating with channel flips), run in reverse: prior sample -> latent.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{conv1d, TapConv1d, WaveNet};
use super::VitsConfig;

struct CouplingLayer {
    pre: TapConv1d,
    enc: WaveNet,
    post: TapConv1d,
    half: usize,
}

impl CouplingLayer {
    fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self> {
        let half = cfg.inter_channels / 2;
        let h = cfg.hidden_channels;
        Ok(Self {
            pre: conv1d(vb.pp("pre"), half, h, 1, 1)?,
            enc: WaveNet::load(vb.pp("enc"), h, cfg.flow_kernel_size, 1, cfg.flow_wn_layers, cfg.gin_channels)?,
            post: conv1d(vb.pp("post"), h, half, 1, 1)?,
            half,
        })
    }

    fn reverse(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let x0 = x.narrow(1, 0, self.half)?;
        let x1 = x.narrow(1, self.half, self.half)?;
        let h = self.enc.forward(&self.pre.forward(&x0)?, g)?;
        let mean = self.post.forward(&h)?;
        Tensor::cat(&[&x0, &(x1 - mean)?], 1)
    }
}

pub struct CouplingFlow {
    /// Coupling layers in forward order (`flows.0`, `flows.2`, ...).
    layers: Vec<CouplingLayer>,
    flip_index: Tensor,
    context: usize,
}

impl CouplingFlow {
    pub fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self> {
        let layers = (0..cfg.flow_n_layers)
            .map(|i| CouplingLayer::load(vb.pp(format!("flows.{}", 2 * i)), cfg))
            .collect::<Result<_>>()?;
        let c = cfg.inter_channels as u32;
        let flip_index = Tensor::from_vec((0..c).rev().collect::<Vec<u32>>(), c as usize, vb.device())?;
        // Each WaveNet layer reaches (kernel - 1) / 2 frames (dilation 1), the layers and the
        // coupling layers one after another.
        let context = cfg.flow_n_layers * cfg.flow_wn_layers * (cfg.flow_kernel_size.max(1) - 1) / 2 + 1;
        Ok(Self { layers, flip_index, context })
    }

    /// Frames on each side of a frame that reach its output.
    pub fn context_frames(&self) -> usize {
        self.context
    }

    pub fn reverse(&self, z: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut z = z.clone();
        for layer in self.layers.iter().rev() {
            z = z.index_select(&self.flip_index, 1)?;
            z = layer.reverse(&z, g)?;
        }
        Ok(z)
    }
}
