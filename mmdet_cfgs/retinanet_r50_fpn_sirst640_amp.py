# RetinaNet ResNet-50 on SIRST, paper scale (one GPU): images upsampled to <= 640 px (about 2x), full FPN/head
# from C2 (strides 4-64), AMP, 100 epochs. Baseline of the pair; its twin retinanet_r50_fpn_sirst640_amp_gauss.py
# differs only in the backbone stem + first stage 3x3/7x7 convs and in the scale weight of the box loss.
#
#   python tools/train.py mmdet_cfgs/retinanet_r50_fpn_sirst640_amp.py --work-dir work_dirs/r50_base
#   torchrun --nproc_per_node=4 tools/train.py mmdet_cfgs/retinanet_r50_fpn_sirst640_amp.py --launcher pytorch \
#       --auto-scale-lr            # several GPUs: batch 8 per GPU, LR scaled from base_batch_size=8
#
# ImageNet weights are optional (default: from scratch, offline). To start from torchvision's ResNet-50
# (downloaded once to ~/.cache/torch; the Gaussian layers keep their .weight names, so they load too and
# only sigma/theta start fresh):
#   --cfg-options model.backbone.init_cfg._delete_=True model.backbone.init_cfg.type=Pretrained \
#                 model.backbone.init_cfg.checkpoint=torchvision://resnet50
# (`_delete_` because init_cfg is None here; a local file works too: ...checkpoint=/path/resnet50.pth; with
# pretrained weights you may also want model.backbone.norm_eval=True). Keep frozen_stages=-1: freezing
# stage 1 would also freeze the Gaussian layers of the twin.
# AmpOptimWrapper needs a GPU; on CPU pass --cfg-options optim_wrapper.type=OptimWrapper.
_base_ = './_base_/sirst_retinanet.py'

img_scale = (640, 640)

model = dict(
    backbone=dict(depth=50, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=0, add_extra_convs='on_input',
              num_outs=5),
    bbox_head=dict(
        # at 2x a target (10 px median) overlaps its best anchor with IoU ~0.65: ~6 positives each with the
        # COCO assigner thresholds, which are kept
        anchor_generator=dict(octave_base_scale=2, scales_per_octave=3, strides=[4, 8, 16, 32, 64]),
        reg_decoded_bbox=True,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug',
         transforms=[[dict(type='Resize', scale=img_scale, keep_ratio=True)],
                     [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                     [dict(type='LoadAnnotations', with_bbox=True)],
                     [dict(type='PackDetInputs',
                           meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                                      'flip_direction'))]]),
]

# 100 epochs x 43 iterations (batch 8), SGD, AMP
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=300),
    dict(type='MultiStepLR', begin=0, end=100, by_epoch=True, milestones=[70, 90], gamma=0.1),
]
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
                     clip_grad=dict(max_norm=35, norm_type=2),
                     # no weight decay on the Gaussian conv's sigma/theta (it would pull sigma towards
                     # softplus(0)); no-op in the baseline, so the twins share one optimizer config
                     paramwise_cfg=dict(custom_keys={'.sigma_raw': dict(decay_mult=0.0),
                                                     '.theta': dict(decay_mult=0.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=8)

default_hooks = dict(logger=dict(type='LoggerHook', interval=20))
log_processor = dict(window_size=20)
