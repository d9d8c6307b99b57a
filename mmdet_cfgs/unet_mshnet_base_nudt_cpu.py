# MSHNet baseline on NUDT-SIRST (Li et al., IEEE TIP 2022: 1327 real-background images, all 256×256, 1–4 targets
# each), CPU-scale schedule of unet_mshnet_base_cpu.py (same model, loss, optimizer, 20 epochs, 2 warm-up epochs).
#   data:  the common IRSTD layout (images/<name>.png, masks/<name>.png, 50_50/{train,test}.txt), read-only from
#          `data_root=None` → gaussconv_plugin.data.nudt_root(): $GAUSSCONV_NUDT_ROOT, else ../shared/data/nudt_sirst
#          beside the checkout (`default_root='nudt_sirst'` below picks that resolver).
#   splits: train on `train_sub` (597), validate (best-mIoU checkpoint) on `val_sub` (66): a fixed 10 % carve of
#          50_50/train committed in gaussconv_plugin/data/splits/nudt_sirst/50_50/ (found by read_split when the
#          dataset folder lacks the lists; regenerate with tools/make_val_split.py), test on `test` (664).
#          MSHNet's own protocol (train on all 663, keep the best epoch on test):
#          --cfg-options train_dataloader.dataset.split=train val_dataloader.dataset.split=test
#   size:  native 256 px: 256×256 training crops, base size 256 (rescale 0.5–2×), validation/test at 256×256.
#   cost:  measured on the 2-core CPU (2026-11-27, two runs side by side at one thread each, `tools/ablation.py
#          --dataset nudt_sirst --parts unet --variants stock both --jobs 2 --threads 1`): 6.6 s per iteration of
#          batch 8 for stock and the GSConv + diff twin alike, 8.3–9.3 min per 83-iteration epoch of the full
#          663-image `train` list (75 iterations on train_sub), 2–7 min more for each test validation; mean 10.3 min
#          per epoch over the 20 epochs of the seed-1 pair (`epoch_seconds` in their result.json), ~3.5 h per
#          20-epoch run; one run alone at two threads ~5.5 s per iteration. On an H100 shared with four other runs:
#          20–25 s per epoch.
#
#   python tools/train.py mmdet_cfgs/unet_mshnet_base_nudt_cpu.py --work-dir work_dirs/unet_mshnet_base_nudt_cpu
#   python tools/test.py  mmdet_cfgs/unet_mshnet_base_nudt_cpu.py work_dirs/unet_mshnet_base_nudt_cpu/best_*.pth
_base_ = './unet_mshnet_base_cpu.py'

data_root = None  # → nudt_root()
default_root = 'nudt_sirst'
idx = '50_50'
train_split, val_split, test_split = 'train_sub', 'val_sub', 'test'
crop_size = 256
base_size = 256

train_dataloader = dict(
    dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split=train_split, crop_size=crop_size,
                 base_size=base_size))
val_dataloader = dict(dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split=val_split))
test_dataloader = dict(dataset=dict(data_root=data_root, default_root=default_root, idx=idx, split=test_split))
