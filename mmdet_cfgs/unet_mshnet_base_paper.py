# MSHNet baseline on SIRST v1, paper-scale (GPU) schedule, as MSHNet's main.py: 256×256 crops (base size 256),
# batch 4 (last partial batch dropped), Adagrad lr 0.05 (constant), 400 epochs, 6 warm-up epochs with plain soft-IoU
# (its `--warm-epoch 5` with `epoch > warm_epoch`: epochs 0–5); validation on the test split every epoch,
# best-mIoU checkpoint kept (MSHNet's protocol: it selects on the test split, so its figures are a best case).
# AMP-ready: `python tools/train.py mmdet_cfgs/unet_mshnet_base_paper.py --amp` switches to AmpOptimWrapper
# (the losses are computed in float32 inside ScaleIoULoss).
_base_ = './unet_mshnet_base_cpu.py'

crop_size = 256
base_size = 256
train_batch_size = 4
max_epochs = 400
warmup_epochs = 6
val_interval = 1

model = dict(warmup_epochs=warmup_epochs)
train_dataloader = dict(batch_size=train_batch_size, num_workers=4, drop_last=True,
                        dataset=dict(crop_size=crop_size, base_size=base_size))
val_dataloader = dict(num_workers=2)
test_dataloader = dict(num_workers=2)
train_cfg = dict(max_epochs=max_epochs, val_interval=val_interval)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=10, max_keep_ckpts=2, save_best='irstd/mIoU', rule='greater'))
env_cfg = dict(cudnn_benchmark=True)
