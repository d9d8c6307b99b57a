# MSHNet baseline (Liu et al., CVPR 2024) on SIRST v1, CPU-scale schedule.
#   model: MSHNet U-Net (4.07 M params), no Gaussian-shaped conv; loss: SLS = ScaleIoULoss(mode='var') + location,
#          deep supervision on 4 scales + fused output, plain soft-IoU for the first `warmup_epochs` epochs.
#   data:  SIRST v1 idx_427: train on `trainval` (341 images), validate/test on `test` (86 images) — MSHNet's
#          protocol (it keeps the best-mIoU epoch on the test split; `save_best` below does the same).
#   CPU schedule: 128×128 training crops (base size 256), batch 8, 20 epochs (2 warm-up), validation every
#          5 epochs. Measured cost (torch 2.14, one thread, process CPU time): 1.16 CPU-s per iteration,
#          ~50 CPU-s per epoch (43 iterations), ~17 CPU-s per validation (86 test images, native size), so
#          ~18 CPU-min for the whole run: ~11–18 min wall on an idle 2-core CPU. On a loaded machine wall time
#          grows accordingly (one epoch took 4–6 min at load average 5, four trainings sharing 2 cores).
#
#   python tools/train.py mmdet_cfgs/unet_mshnet_base_cpu.py --work-dir work_dirs/unet_mshnet_base_cpu
#   python tools/test.py  mmdet_cfgs/unet_mshnet_base_cpu.py work_dirs/unet_mshnet_base_cpu/epoch_20.pth \
#       --show-dir vis        # + masks/overlays (and ROC/PR PNGs) under work_dir/<timestamp>/vis
#
# Data root: `data_root=None` resolves through gaussconv_plugin.data.sirst_root(): $GAUSSCONV_SIRST_ROOT, else
# ../shared/data/sirst beside the checkout. Another folder in the SIRST layout:
#   --cfg-options train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR \
#                 test_dataloader.dataset.data_root=DIR
# `idx=None` is the layout's split folder (SIRST: idx_427). NUDT-SIRST (IRSTD layout): unet_mshnet_base_nudt_cpu.py.
custom_imports = dict(imports=['gaussconv_plugin.mmdet'], allow_failed_imports=False)

data_root = None
train_split, val_split, test_split = 'trainval', 'test', 'test'
crop_size = 128
base_size = 256
train_batch_size = 8
max_epochs = 20
warmup_epochs = 2
val_interval = 5
lr = 0.05  # MSHNet: Adagrad, lr 0.05, constant

model = dict(
    type='IRSTDSegmentor',
    net=dict(in_channels=1, channels=(16, 32, 64, 128, 256), blocks=(2, 2, 2, 2), gauss_conv='none'),
    loss=dict(mode='var', with_location=True),
    warmup_epochs=warmup_epochs,
)

train_dataloader = dict(
    batch_size=train_batch_size,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='seg_pad_collate', size_divisor=32),
    dataset=dict(
        type='SIRSTSegDataset', data_root=data_root, split=train_split, idx=None, mode='train',
        crop_size=crop_size, base_size=base_size, scale_range=(0.5, 2.0), hflip=0.5, vflip=0.0, blur_prob=0.5,
        channels=1),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='seg_pad_collate', size_divisor=32),
    dataset=dict(type='SIRSTSegDataset', data_root=data_root, split=val_split, idx=None, mode='test',
                 channels=1),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='seg_pad_collate', size_divisor=32),
    dataset=dict(type='SIRSTSegDataset', data_root=data_root, split=test_split, idx=None, mode='test',
                 channels=1),
)
val_evaluator = dict(type='IRSTDMetric', threshold=0.5, distance_threshold=3)
test_evaluator = dict(type='IRSTDMetric', threshold=0.5, distance_threshold=3, curve_bins=50, curve_spacing='logit')

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adagrad', lr=lr))
param_scheduler = []  # constant learning rate, as MSHNet

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2, save_best='irstd/mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='IRSTDVisualizationHook', draw=False),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
