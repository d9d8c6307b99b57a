# Proposed on IRSTD-1k: MSHNet U-Net with Gaussian-shaped convolutions (spatial-attention 7×7 conv of every
# residual block and the two 3×3 convs of the first encoder stage) trained with the diff scale loss
# (ScaleIoULoss(mode='diff') + location term). Everything else as unet_mshnet_base_irstd1k_cpu.py (data, splits,
# 256-px crops of the 512² images, full-image validation/test, CPU schedule); the model part is that of
# unet_gauss_diff_cpu.py.
_base_ = './unet_mshnet_base_irstd1k_cpu.py'

model = dict(
    net=dict(gauss_conv='both', gauss_kwargs=dict(tau=0.5)),
    loss=dict(mode='diff', with_location=True, lambda_over=1.0, lambda_under=1.0),
)
