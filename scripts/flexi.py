"""FlexiViT's PI-resize (Beyer et al., "FlexiViT: One Model for All Patch Sizes", CVPR 2023),
written from the paper's definition, independently of tessera's Rust code: the reference for the
fixtures and the training of the embedded default.

A patch embedding w (p x p per output and input channel) is resized to q x q as
    w_hat = pinv(B^T) w,
where B (q^2 x p^2) is the bilinear resize matrix (column j: the bilinear resize of the j-th basis
patch, half-pixel centres, no antialiasing: torch's F.interpolate(mode="bilinear",
align_corners=False)). Then <x, w> = <B x, w_hat> for every patch x when upsampling, and w_hat is
the least-squares solution of w = B^T w_hat otherwise. Position embeddings follow the token grid
with transformers' bicubic interpolation.
"""
import numpy as np
import torch
import torch.nn.functional as F


def resize_matrix(p, q):
    """B (q*q, p*p): the bilinear resize of each of the p*p basis patches, as columns."""
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    out = F.interpolate(basis, size=(q, q), mode="bilinear", align_corners=False, antialias=False)
    return out.reshape(p * p, q * q).T


def pi_resize_matrix(p, q):
    """pinv(B^T), (q*q, p*p), in float64."""
    b = resize_matrix(p, q).numpy()
    return torch.from_numpy(np.linalg.pinv(b.T))


def pi_resize(w, q, matrix=None):
    """w (D, C, p, p) -> (D, C, q, q); differentiable in w (the matrix is a constant)."""
    d, c, p, _ = w.shape
    m = (pi_resize_matrix(p, q) if matrix is None else matrix).to(w.dtype)
    return (w.reshape(d, c, p * p) @ m.T).reshape(d, c, q, q)


def interpolate_positions(pos, prefix, grid):
    """pos (1, prefix + s*s, D) -> (1, prefix + grid*grid, D): transformers' ViT
    interpolate_pos_encoding (bicubic, align_corners=False) on the patch positions."""
    n = pos.shape[1] - prefix
    s = int(round(n ** 0.5))
    if s == grid:
        return pos
    d = pos.shape[-1]
    patch = pos[:, prefix:].reshape(1, s, s, d).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :prefix], patch.permute(0, 2, 3, 1).reshape(1, grid * grid, d)], dim=1)
