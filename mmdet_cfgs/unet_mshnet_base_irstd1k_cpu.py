# MSHNet baseline on IRSTD-1k (Zhang et al., CVPR 2022: 1001 real IR images, all 512×512, 1492 targets of 1–1065 px),
# CPU-scale schedule of unet_mshnet_base_cpu.py (same model, SLS loss, Adagrad 0.05, batch 8, 20 epochs, 2 warm-up).
#   data:  the common IRSTD layout (images/<name>.png, masks/<name>.png, idx/{trainval,test}.txt), read-only from
#          `data_root=None` → gaussconv_plugin.data.irstd1k_root(): $GAUSSCONV_IRSTD1K_ROOT, else
#          ../shared/data/irstd1k beside the checkout (`default_root='irstd1k'` below picks that resolver). Target
#          where mask > 127 (85 masks hold grey rim pixels; the rule and why: gaussconv_plugin/data/__init__.py).
#   splits: train on `trainval_sub` (720), validate on `val_sub` (80): a fixed 10 % carve of idx/trainval committed in
#          gaussconv_plugin/data/splits/irstd1k/idx/ (found by read_split; regenerate with tools/make_val_split.py
#          --dataset irstd1k --parent trainval), test on `test` (201). Choices (schedule, epoch) are made on val_sub.
#          The final protocol (the dataset authors' split, as MSHNet and the paper report it):
#          --cfg-options train_dataloader.dataset.split=trainval val_dataloader.dataset.split=test
#   size:  MSHNet's 256×256 random training crops, taken from the 512² image rescaled to a long side of 256–1024
#          (base size 512, rescale 0.5–2×); validation/test on the full 512×512 images. MSHNet itself uses base
#          size 256 and resizes the test images to 256×256 (its utils/data.py), i.e. trains at 0.25–1× and tests at
#          0.5× the native scale; base size 512 keeps that 0.5–2× ratio of training to test scale while testing at
#          the native resolution (pixel-accurate masks, Fa per native pixel, no target lost by downsampling).
#   cost:  not yet timed over an epoch (90 iterations of batch 8 on trainval_sub, 100 on trainval). Smoke only
#          (2026-12-05, the 2-core CPU busy with two other trainings, one thread, nice 15; `tools/ablation.py
#          --dataset irstd1k --parts unet --split trainval_sub:val_sub --limit 4 --epochs 1`): the one iteration
#          (batch 4, the first, start-up included) 8.8 s, validation 2.5 s per full 512² image, 20 s per epoch.
#
#   python tools/train.py mmdet_cfgs/unet_mshnet_base_irstd1k_cpu.py --work-dir work_dirs/unet_mshnet_base_irstd1k_cpu
#   python tools/test.py  mmdet_cfgs/unet_mshnet_base_irstd1k_cpu.py work_dirs/unet_mshnet_base_irstd1k_cpu/best_*.pth
#   python tools/ablation.py --dataset irstd1k --parts unet --variants stock both --seeds 0 1 2   # trainval → test
_base_ = './unet_mshnet_base_cpu.py'

data_root = None  # → irstd1k_root()
default_root = 'irstd1k'
idx = 'idx'
train_split, val_split, test_split = 'trainval_sub', 'val_sub', 'test'
crop_size = 256
base_size = 512

train_dataloader = dict(
    dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split=train_split, crop_size=crop_size,
                 base_size=base_size))
val_dataloader = dict(dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split=val_split))
test_dataloader = dict(dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split=test_split))
