# MSHNet baseline on IRSTD-1k at MSHNet's own protocol (its main.py defaults, written for IRSTD-1k), for a comparison
# with its published 67.16 % mIoU: the paper-scale schedule of unet_mshnet_base_paper.py (batch 4, Adagrad 0.05,
# 400 epochs, 6 warm-up epochs) on the dataset authors' split, trained on `trainval` (800) with 256² crops of the
# image rescaled to a long side of 128–512 (base size 256, i.e. 0.25–1× the native 512), validated and tested on
# `test` (201) resized to 256² (image bilinear, mask nearest: its _testval_sync_transform; 4 of the 297 test targets
# vanish in that resize), best-mIoU checkpoint on `test` kept — MSHNet's selection, so a best case, not a claim.
# unet_mshnet_base_irstd1k_cpu.py is this project's own protocol (base 512, native 512² test, choices on val_sub).
#   python tools/train.py mmdet_cfgs/unet_mshnet_base_irstd1k_paper.py --work-dir work_dirs/unet_mshnet_base_irstd1k_paper
_base_ = './unet_mshnet_base_paper.py'

data_root = None  # → irstd1k_root()
default_root = 'irstd1k'
idx = 'idx'
test_size = 256

train_dataloader = dict(dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split='trainval'))
val_dataloader = dict(dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split='test',
                                   test_size=test_size))
test_dataloader = dict(dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split='test',
                                    test_size=test_size))
