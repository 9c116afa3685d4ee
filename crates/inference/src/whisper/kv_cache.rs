//! The decoder's self-attention cache grows by one position a step, and under beam search its
//! rows follow their beams. Selecting the rows and then appending the new keys as two tensor
//! ops copies the whole cache twice a step and layer; on the CPU it is done here in one pass
//! that gathers each kept row and appends its new positions as it goes.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::cpu_ops::contiguous_f32;

/// `cache` (rows, heads, positions, d_head) with its rows `kept` (all of them in order when
/// `None`; a row may repeat), followed along the positions by `new` (kept.len(), heads, n,
/// d_head).
pub fn kept_and_appended(cache: &Tensor, new: &Tensor, kept: Option<&[u32]>) -> Result<Tensor> {
    let on_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if on_cpu(cache) && on_cpu(new) {
        let op = Append { kept: kept.map(<[u32]>::to_vec) };
        return cache.contiguous()?.apply_op2_no_bwd(&new.contiguous()?, &op);
    }
    selected_then_concatenated(cache, new, kept)
}

/// The same as two tensor ops, on any device.
fn selected_then_concatenated(cache: &Tensor, new: &Tensor, kept: Option<&[u32]>) -> Result<Tensor> {
    let cache = match kept {
        Some(rows) => cache.index_select(&Tensor::new(rows, cache.device())?, 0)?,
        None => cache.clone(),
    };
    Tensor::cat(&[&cache, new], 2)
}

struct Append {
    kept: Option<Vec<u32>>,
}

impl CustomOp2 for Append {
    fn name(&self) -> &'static str {
        "smai-kv-append"
    }

    fn cpu_fwd(&self, cs: &CpuStorage, cl: &Layout, ns: &CpuStorage, nl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (cache, new) = (contiguous_f32(cs, cl)?, contiguous_f32(ns, nl)?);
        let (rows, heads, old, dh) = cl.shape().dims4()?;
        let (b, new_heads, n, new_dh) = nl.shape().dims4()?;
        let kept: Vec<usize> = match &self.kept {
            Some(kept) => kept.iter().map(|&r| r as usize).collect(),
            None => (0..rows).collect(),
        };
        if kept.len() != b || new_heads != heads || new_dh != dh || kept.iter().any(|&r| r >= rows) {
            candle_core::bail!("kv append: cache {:?}, new {:?}, rows {kept:?}", cl.shape(), nl.shape());
        }
        let total = old + n;
        let mut out = Vec::with_capacity(b * heads * total * dh);
        for (i, &row) in kept.iter().enumerate() {
            for head in 0..heads {
                out.extend_from_slice(&cache[((row * heads + head) * old) * dh..][..old * dh]);
                out.extend_from_slice(&new[((i * heads + head) * n) * dh..][..n * dh]);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, heads, total, dh))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::cpu_ops::test_tensor;

    #[test]
    fn gathers_and_appends_as_select_then_concatenate() -> Result<()> {
        let cache = test_tensor((3, 2, 5, 4), 1.0, 1)?;
        for (kept, n) in [(None, 1), (Some(&[2u32, 0, 0][..]), 1), (Some(&[1u32, 1][..]), 3)] {
            let rows = kept.map_or(3, <[u32]>::len);
            let new = test_tensor((rows, 2, n, 4), 1.0, 2)?;
            let got = kept_and_appended(&cache, &new, kept)?;
            let want = selected_then_concatenated(&cache, &new, kept)?;
            assert_eq!(got.dims(), want.dims());
            let (got, want) = (got.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?);
            assert_eq!(got, want, "rows {kept:?}, {n} new");
        }
        Ok(())
    }

    #[test]
    fn refuses_rows_out_of_range() -> Result<()> {
        let cache = test_tensor((2, 1, 3, 4), 1.0, 1)?;
        let new = test_tensor((1, 1, 1, 4), 1.0, 2)?;
        assert!(kept_and_appended(&cache, &new, Some(&[2])).is_err());
        Ok(())
    }
}
