# Proposed (Gaussian-shaped conv + diff scale loss) on IRSTD-1k at MSHNet's own protocol: the twin of
# unet_mshnet_base_irstd1k_paper.py (base size 256, test resized to 256², 400 epochs, best test epoch), for a
# comparison with the paper's 69.19 % mIoU.
_base_ = './unet_mshnet_base_irstd1k_paper.py'

model = dict(
    net=dict(gauss_conv='both', gauss_kwargs=dict(tau=0.5)),
    loss=dict(mode='diff', with_location=True, lambda_over=1.0, lambda_under=1.0),
)
