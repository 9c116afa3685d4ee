//! Loading Whisper weights, named as candle-transformers / Hugging Face name them. Two layouts:
//! CTranslate2 (`model.bin` + its `config.json`), mapped name by name onto the Hugging Face
//! names candle expects (fused attention projections are split), and Hugging Face
//! (`config.json` + `model.safetensors`).

use super::ct2::{Ct2Error, Ct2Model};
use super::network::{Decoder, Encoder};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::Config;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model files missing in {0}: run `smai models pull` (or set SMAI_MODELS_DIR)")]
    Missing(String),
    #[error("io on {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Ct2(#[from] Ct2Error),
    #[error("config: {0}")]
    Config(String),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Generation settings shipped next to the weights (CTranslate2's `config.json`, or the
/// Hugging Face `generation_config.json` fields of the same meaning).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationConfig {
    #[serde(default)]
    pub alignment_heads: Vec<(usize, usize)>,
    #[serde(default)]
    pub lang_ids: Vec<u32>,
    #[serde(default)]
    pub suppress_ids: Vec<u32>,
    #[serde(default)]
    pub suppress_ids_begin: Vec<u32>,
}

pub struct LoadedWeights {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub config: Config,
    pub generation: GenerationConfig,
}

fn build(vb: VarBuilder, config: Config, generation: GenerationConfig) -> Result<LoadedWeights, LoadError> {
    let encoder = Encoder::load(vb.pp("model.encoder"), &config)?;
    let decoder = Decoder::load(vb.pp("model.decoder"), &config)?;
    Ok(LoadedWeights { encoder, decoder, config, generation })
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::Io(path.display().to_string(), e))
}

/// Loads from a model directory in either layout.
pub fn load_dir(dir: &Path, device: &Device) -> Result<LoadedWeights, LoadError> {
    if dir.join("model.bin").is_file() {
        load_ct2(dir, device)
    } else if dir.join("model.safetensors").is_file() {
        load_hf(dir, device)
    } else {
        Err(LoadError::Missing(dir.display().to_string()))
    }
}

fn load_ct2(dir: &Path, device: &Device) -> Result<LoadedWeights, LoadError> {
    let generation: GenerationConfig =
        serde_json::from_slice(&read(&dir.join("config.json"))?).map_err(|e| LoadError::Config(e.to_string()))?;
    let ct2 = Ct2Model::parse(&read(&dir.join("model.bin"))?)?;
    if ct2.spec != "WhisperSpec" {
        return Err(LoadError::Config(format!("model.bin holds a {}, not a WhisperSpec", ct2.spec)));
    }
    let (tensors, config) = ct2_to_candle(&ct2, device)?;
    build(VarBuilder::from_tensors(tensors, DType::F32, device), config, generation)
}

fn count_layers(ct2: &Ct2Model, prefix: &str) -> usize {
    (0..).take_while(|i| ct2.variables.contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))).count()
}

/// Renames CTranslate2 variables to candle's (Hugging Face) names and derives the config.
pub fn ct2_to_candle(ct2: &Ct2Model, dev: &Device) -> Result<(HashMap<String, Tensor>, Config), LoadError> {
    let get = |n: &str| ct2.tensor_f32(n, dev);
    let mut out: HashMap<String, Tensor> = HashMap::new();
    let put_linear = |out: &mut HashMap<String, Tensor>, from: &str, to: &str| -> Result<(), LoadError> {
        out.insert(format!("{to}.weight"), get(&format!("{from}/weight"))?);
        out.insert(format!("{to}.bias"), get(&format!("{from}/bias"))?);
        Ok(())
    };
    let put_norm = |out: &mut HashMap<String, Tensor>, from: &str, to: &str| -> Result<(), LoadError> {
        out.insert(format!("{to}.weight"), get(&format!("{from}/gamma"))?);
        out.insert(format!("{to}.bias"), get(&format!("{from}/beta"))?);
        Ok(())
    };
    // Fused projections: rows are [q; k; v] (self) or [k; v] (cross). k has no bias in Whisper.
    let split = |from: &str, parts: usize| -> Result<(Vec<Tensor>, Vec<Tensor>), LoadError> {
        let w = get(&format!("{from}/weight"))?;
        let b = get(&format!("{from}/bias"))?;
        let n = w.dim(0)? / parts;
        let ws = (0..parts).map(|i| w.narrow(0, i * n, n)).collect::<Result<Vec<_>, _>>()?;
        let bs = (0..parts).map(|i| b.narrow(0, i * n, n)).collect::<Result<Vec<_>, _>>()?;
        Ok((ws, bs))
    };

    for (side, to_side) in [("encoder", "model.encoder"), ("decoder", "model.decoder")] {
        for i in 0..count_layers(ct2, side) {
            let (f, t) = (format!("{side}/layer_{i}"), format!("{to_side}.layers.{i}"));
            put_norm(&mut out, &format!("{f}/self_attention/layer_norm"), &format!("{t}.self_attn_layer_norm"))?;
            let (ws, bs) = split(&format!("{f}/self_attention/linear_0"), 3)?;
            out.insert(format!("{t}.self_attn.q_proj.weight"), ws[0].clone());
            out.insert(format!("{t}.self_attn.q_proj.bias"), bs[0].clone());
            out.insert(format!("{t}.self_attn.k_proj.weight"), ws[1].clone());
            out.insert(format!("{t}.self_attn.v_proj.weight"), ws[2].clone());
            out.insert(format!("{t}.self_attn.v_proj.bias"), bs[2].clone());
            put_linear(&mut out, &format!("{f}/self_attention/linear_1"), &format!("{t}.self_attn.out_proj"))?;
            if side == "decoder" {
                put_norm(&mut out, &format!("{f}/attention/layer_norm"), &format!("{t}.encoder_attn_layer_norm"))?;
                put_linear(&mut out, &format!("{f}/attention/linear_0"), &format!("{t}.encoder_attn.q_proj"))?;
                let (ws, bs) = split(&format!("{f}/attention/linear_1"), 2)?;
                out.insert(format!("{t}.encoder_attn.k_proj.weight"), ws[0].clone());
                out.insert(format!("{t}.encoder_attn.v_proj.weight"), ws[1].clone());
                out.insert(format!("{t}.encoder_attn.v_proj.bias"), bs[1].clone());
                put_linear(&mut out, &format!("{f}/attention/linear_2"), &format!("{t}.encoder_attn.out_proj"))?;
            }
            put_norm(&mut out, &format!("{f}/ffn/layer_norm"), &format!("{t}.final_layer_norm"))?;
            put_linear(&mut out, &format!("{f}/ffn/linear_0"), &format!("{t}.fc1"))?;
            put_linear(&mut out, &format!("{f}/ffn/linear_1"), &format!("{t}.fc2"))?;
        }
        put_norm(&mut out, &format!("{side}/layer_norm"), &format!("{to_side}.layer_norm"))?;
        out.insert(format!("{to_side}.embed_positions.weight"), get(&format!("{side}/position_encodings/encodings"))?);
    }
    for conv in ["conv1", "conv2"] {
        out.insert(format!("model.encoder.{conv}.weight"), get(&format!("encoder/{conv}/weight"))?);
        out.insert(format!("model.encoder.{conv}.bias"), get(&format!("encoder/{conv}/bias"))?);
    }
    let embed = get("decoder/embeddings/weight")?;
    let (vocab_size, _) = embed.dims2()?;
    out.insert("model.decoder.embed_tokens.weight".into(), embed);

    let conv1 = &out["model.encoder.conv1.weight"];
    let (_, num_mel_bins, _) = conv1.dims3()?;
    let heads = |side: &str| {
        ct2.scalar_int(&format!("{side}/num_heads"))
            .filter(|&h| h > 0)
            .map(|h| h as usize)
            .ok_or_else(|| LoadError::Config(format!("{side}/num_heads missing")))
    };
    let config = Config {
        num_mel_bins,
        max_source_positions: out["model.encoder.embed_positions.weight"].dim(0)?,
        d_model: out["model.encoder.conv1.bias"].dim(0)?,
        encoder_attention_heads: heads("encoder")?,
        encoder_layers: count_layers(ct2, "encoder"),
        vocab_size,
        max_target_positions: out["model.decoder.embed_positions.weight"].dim(0)?,
        decoder_attention_heads: heads("decoder")?,
        decoder_layers: count_layers(ct2, "decoder"),
        suppress_tokens: vec![],
    };
    Ok((out, config))
}

/// Hugging Face layout: `config.json` (with `suppress_tokens`, `begin_suppress_tokens`,
/// `alignment_heads` optional) and `model.safetensors`.
fn load_hf(dir: &Path, device: &Device) -> Result<LoadedWeights, LoadError> {
    let text = read(&dir.join("config.json"))?;
    let config: Config = serde_json::from_slice(&text).map_err(|e| LoadError::Config(e.to_string()))?;
    #[derive(Deserialize, Default)]
    struct HfExtras {
        #[serde(default)]
        begin_suppress_tokens: Vec<u32>,
        #[serde(default)]
        alignment_heads: Vec<(usize, usize)>,
        #[serde(default)]
        lang_to_id: HashMap<String, u32>,
    }
    let gen_path = dir.join("generation_config.json");
    let extras: HfExtras = if gen_path.is_file() {
        serde_json::from_slice(&read(&gen_path)?).map_err(|e| LoadError::Config(e.to_string()))?
    } else {
        HfExtras::default()
    };
    let mut lang_ids: Vec<u32> = extras.lang_to_id.values().copied().collect();
    lang_ids.sort_unstable();
    let generation = GenerationConfig {
        alignment_heads: extras.alignment_heads,
        lang_ids,
        suppress_ids: config.suppress_tokens.clone(),
        suppress_ids_begin: extras.begin_suppress_tokens,
    };
    let file = dir.join("model.safetensors");
    // SAFETY: the file is only read; it is not modified while mapped by this process.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, device)? };
    build(vb, config, generation)
}
