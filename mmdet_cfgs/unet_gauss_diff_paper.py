# Proposed (Gaussian-shaped conv + diff scale loss), paper-scale GPU schedule of unet_mshnet_base_paper.py
# (256×256, batch 4, Adagrad 0.05, 400 epochs, 6 warm-up epochs; `--amp` for mixed precision).
_base_ = './unet_mshnet_base_paper.py'

model = dict(
    net=dict(gauss_conv='both', gauss_kwargs=dict(tau=0.5)),
    loss=dict(mode='diff', with_location=True, lambda_over=1.0, lambda_under=1.0),
)
