"""Benchmark readers of annotation-file, ImageNet-family, video and retrieval datasets, each on a tiny set written
here in the dataset's own format (.mat through scipy, VOC XML, Karpathy JSON, split lists; the format writers of
benchmark_formats.py), with exact labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from benchmark_formats import (
    karpathy_json,
    kitti_line,
    mat_structs,
    sentences,
    voc_xml,
    write_image,
    write_mat,
    write_text,
    write_video,
)
from PIL import Image

from clipworks.data.benchmarks import READERS, annotated, imagenet, retrieval, video  # noqa: F401 (registration)
from clipworks.data.benchmarks.annotated import (
    kitti_split,
    read_birdsnap,
    read_caltech101,
    read_cars,
    read_fgvc_aircraft,
    read_flowers102,
    read_kitti_distance,
    read_pets,
    read_voc2007,
)
from clipworks.data.benchmarks.imagenet import (
    read_imagenet,
    read_imagenet_a,
    read_imagenet_r,
    read_imagenet_sketch,
    read_imagenet_v2,
    read_objectnet,
)
from clipworks.data.benchmarks.retrieval import read_flickr30k, read_mscoco
from clipworks.data.benchmarks.video import read_kinetics700, read_ucf101
from clipworks.errors import ConfigError, DataError


def names(dataset) -> list[str]:
    return [p.name for p in dataset.paths]


def one_line_error(kind, read, root, file, split="test") -> str:
    """The message of the `kind` error that `read(root, split)` raises, checked to be one line naming `file`."""
    with pytest.raises(kind) as e:
        read(root, split)
    message = str(e.value)
    assert "\n" not in message and str(file) in message
    return message


def test_every_reader_is_registered():
    assert {"cars", "fgvc_aircraft", "pets", "caltech101", "flowers102", "birdsnap", "voc2007", "kitti_distance",
            "ucf101", "kinetics700", "imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r",
            "objectnet", "flickr30k", "mscoco"} <= set(READERS)


def test_cars_devkit_mat_files(tmp_path):
    base = tmp_path / "stanford_cars"  # torchvision's layout: root holds stanford_cars/
    (base / "devkit").mkdir(parents=True)
    classes = np.array(["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8"], dtype=object)
    write_mat(base / "devkit" / "cars_meta.mat", class_names=classes)
    write_mat(base / "cars_test_annos_withlabels.mat",
              annotations=mat_structs(("fname", "class"), [("00002.jpg", 3), ("00001.jpg", 1)]))
    write_mat(base / "devkit" / "cars_train_annos.mat", annotations=mat_structs(("fname", "class"), [("00009.jpg", 2)]))
    (base / "cars_test").mkdir()
    (base / "cars_train").mkdir()
    test = read_cars(tmp_path, "test")
    assert test.classes == ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8"]
    assert test.paths == [base / "cars_test" / "00002.jpg", base / "cars_test" / "00001.jpg"]
    assert test.labels == [2, 0] and test.transform is None
    train = read_cars(base, "train")  # the dataset's own folder works too
    assert train.paths == [base / "cars_train" / "00009.jpg"] and train.labels == [1]


def test_fgvc_aircraft_variant_lists(tmp_path):
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    write_text(data / "variants.txt", "707-320\nBoeing 717\nA300B4\n")
    write_text(data / "images_variant_test.txt", "1025794 A300B4\n0062765 Boeing 717\n")
    write_text(data / "images_variant_trainval.txt", "1340192 707-320\n")
    test = read_fgvc_aircraft(tmp_path, "test")
    assert test.classes == ["707-320", "Boeing 717", "A300B4"]
    assert names(test) == ["1025794.jpg", "0062765.jpg"] and test.labels == [2, 1]
    assert read_fgvc_aircraft(tmp_path, "train").labels == [0]
    write_text(data / "images_variant_test.txt", "1025794 Concorde\n")
    with pytest.raises(DataError, match="Concorde"):
        read_fgvc_aircraft(tmp_path, "test")


def test_pets_class_ids_and_breed_names(tmp_path):
    ann = tmp_path / "oxford-iiit-pet" / "annotations"
    write_text(ann / "test.txt", "Abyssinian_201 1 1 1\nbasset_hound_12 3 2 2\n")
    write_text(ann / "trainval.txt", "american_bulldog_100 2 2 1\nAbyssinian_100 1 1 1\n")
    test = read_pets(tmp_path, "test")
    assert test.classes == ["Abyssinian", "american_bulldog", "basset_hound"]
    assert names(test) == ["Abyssinian_201.jpg", "basset_hound_12.jpg"] and test.labels == [0, 2]
    assert read_pets(tmp_path, "train").labels == [1, 0]


PETS_LINE = "expected 'IMAGE_ID CLASS-ID SPECIES BREED-ID'"


@pytest.mark.parametrize("broken, content, message", [
    ("test.txt", "Abyssinian_201 1 1 1\nbasset_hound_12\n",
     f"pets: {{file}} has a line 'basset_hound_12'; {PETS_LINE}"),
    ("test.txt", "basset_hound_12 3 2 2\nx three 2 2\n", f"pets: {{file}} has a line 'x three 2 2'; {PETS_LINE}"),
    ("trainval.txt", "american_bulldog_100\n",  # the other split's file, read for the breed names
     f"pets: {{file}} has a line 'american_bulldog_100'; {PETS_LINE}"),
], ids=["no-class-id", "class-id-a-word", "other-split"])
def test_pets_malformed_annotation_line(tmp_path, broken, content, message):
    ann = tmp_path / "oxford-iiit-pet" / "annotations"
    write_text(ann / "test.txt", "Abyssinian_201 1 1 1\n")
    write_text(ann / "trainval.txt", "Abyssinian_100 1 1 1\n")
    file = write_text(ann / broken, content)
    assert one_line_error(DataError, read_pets, tmp_path, file) == message.format(file=file)


def test_pets_split_list_of_no_images(tmp_path):
    listing = write_text(tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt",
                         "#Image CLASS-ID SPECIES BREED ID\n")  # a comment line only, and no trainval.txt
    assert one_line_error(DataError, read_pets, tmp_path, listing) == f"pets: {listing} lists no images"


def test_caltech101_keeps_background_and_splits_per_class(tmp_path):
    cats = tmp_path / "caltech101" / "101_ObjectCategories"
    for name in ("accordion", "Faces_easy", "BACKGROUND_Google", "Faces"):
        for i in range(4):
            write_image(cats / name / f"image_{i:04d}.jpg")
    train = read_caltech101(tmp_path, "train", n_train=3)
    test = read_caltech101(tmp_path, "test", n_train=3)
    assert train.classes == ["BACKGROUND_Google", "Faces", "Faces_easy", "accordion"]  # CLIP's order: background first
    assert sorted(train.labels) == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 and test.labels == [0, 1, 2, 3]
    assert not set(train.paths) & set(test.paths) and len(set(train.paths) | set(test.paths)) == 16
    assert read_caltech101(tmp_path, "test", n_train=3).paths == test.paths  # a fixed draw
    with pytest.raises(DataError, match="more than 30"):
        read_caltech101(tmp_path, "test")


def test_flowers102_mat_labels_and_setid(tmp_path):
    base = tmp_path / "flowers-102"
    base.mkdir()
    write_mat(base / "imagelabels.mat", labels=np.array([[1, 3, 1, 2, 3]], dtype=np.uint8))
    write_mat(base / "setid.mat", trnid=np.array([[1]]), valid=np.array([[4]]), tstid=np.array([[2, 3, 5]]))
    (base / "jpg").mkdir()
    test = read_flowers102(tmp_path, "test")
    assert names(test) == ["image_00002.jpg", "image_00003.jpg", "image_00005.jpg"]
    assert test.labels == [2, 0, 2] and test.classes == ["1", "2", "3"]
    train = read_flowers102(base, "train")  # trnid + valid
    assert names(train) == ["image_00001.jpg", "image_00004.jpg"] and train.labels == [0, 1]
    write_mat(base / "setid.mat", trnid=np.array([[1]]))
    with pytest.raises(DataError, match="'valid'"):
        read_flowers102(tmp_path, "test")


def test_birdsnap_species_and_test_list_leaves_out_missing_images(tmp_path, caplog):
    base = tmp_path / "birdsnap"
    write_text(base / "species.txt", "id\tcommon\tscientific\tdir\n1\tAcorn Woodpecker\tMelanerpes\tAcorn_Woodpecker\n"
                                     "2\tAcadian Flycatcher\tEmpidonax\tAcadian_Flycatcher\n")
    write_text(base / "images.txt", "url\tmd5\tpath\tspecies_id\n"
                                    "u\tm\tAcadian_Flycatcher/1.jpg\t2\nu\tm\tAcorn_Woodpecker/2.jpg\t1\n"
                                    "u\tm\tAcorn_Woodpecker/3.jpg\t1\nu\tm\tAcorn_Woodpecker/4.jpg\t1\n")
    write_text(base / "test_images.txt",
               "path\nAcorn_Woodpecker/2.jpg\nAcadian_Flycatcher/1.jpg\nAcorn_Woodpecker/4.jpg\n")
    images = base / "download" / "images"
    for rel in ("Acadian_Flycatcher/1.jpg", "Acorn_Woodpecker/2.jpg", "Acorn_Woodpecker/3.jpg"):
        write_image(images / rel)
    test = read_birdsnap(tmp_path, "test")
    assert test.classes == ["Acadian_Flycatcher", "Acorn_Woodpecker"]  # sorted folder names, not species ids
    assert test.paths == [images / "Acadian_Flycatcher/1.jpg", images / "Acorn_Woodpecker/2.jpg"]
    assert test.labels == [0, 1] and "1 of the 3 test images" in caplog.text
    assert read_birdsnap(tmp_path, "train").labels == [1]


BIRDSNAP_SPECIES = "id\tcommon\tdir\n1\tAcorn Woodpecker\tAcorn_Woodpecker\n"
BIRDSNAP_IMAGES = "url\tmd5\tpath\tspecies_id\n"


@pytest.mark.parametrize("broken, content, message", [
    ("species.txt", BIRDSNAP_SPECIES + "one\tAcadian Flycatcher\tAcadian_Flycatcher\n",
     "birdsnap: {file} line 3 has id 'one'; expected a whole number, the species' id"),
    ("images.txt", BIRDSNAP_IMAGES + "u\tm\tAcorn_Woodpecker/1.jpg\t1\n\nu\tm\tAcorn_Woodpecker/2.jpg\t1.5\n",
     "birdsnap: {file} line 4 has species_id '1.5'; expected a whole number, an id of species.txt"),
    ("images.txt", BIRDSNAP_IMAGES + "u\tm\tAcorn_Woodpecker/1.jpg\n",
     "birdsnap: {file} line 2 has 3 tab-separated fields, no 'species_id'; the header line names 4"),
    ("images.txt", "url\tmd5\tpath\tspecies\nu\tm\tAcorn_Woodpecker/1.jpg\t1\n",
     "birdsnap: {file} has no column 'species_id' in its header line"),
    ("images.txt", BIRDSNAP_IMAGES + "u\tm\tAcorn_Woodpecker/1.jpg\t1\r\nu\tm\tOther/2.jpg\t7\r\n",
     "birdsnap: {file} line 3 has species_id 7, which {species} does not list"),
], ids=["species-id-a-word", "species-id-a-fraction", "row-without-species-id", "header-without-species-id",
        "species-id-not-listed"])
def test_birdsnap_malformed_species_or_images_file(tmp_path, broken, content, message):
    base = tmp_path / "birdsnap"
    species = write_text(base / "species.txt", BIRDSNAP_SPECIES)
    write_text(base / "images.txt", BIRDSNAP_IMAGES + "u\tm\tAcorn_Woodpecker/1.jpg\t1\n")
    write_text(base / "test_images.txt", "path\nAcorn_Woodpecker/1.jpg\n")
    write_image(base / "images" / "Acorn_Woodpecker" / "1.jpg")
    file = write_text(base / broken, content)
    assert one_line_error(DataError, read_birdsnap, tmp_path, file) == message.format(file=file, species=species)


def test_birdsnap_and_list_files_end_lines_at_line_ends_only(tmp_path):
    # U+2028, U+0085 and form feed inside a field are text: splitlines() cut each of these rows in two.
    base = tmp_path / "birdsnap"
    write_text(base / "species.txt", "id\tcommon\tdir\r\n1\tAcorn\u2028Woodpecker\tAcorn_Woodpecker\r\n"
                                     "2\tAcadian\x85Flycatcher\tAcadian_Flycatcher\r\n")
    write_text(base / "images.txt", "url\tpath\tspecies_id\rhttp://a/\x0c1\tAcorn_Woodpecker/1.jpg\t1\r"
                                    "http://a/2\tAcadian_Flycatcher/2.jpg\t2\r")
    write_text(base / "test_images.txt", "path\nAcorn_Woodpecker/1.jpg\nAcadian_Flycatcher/2.jpg\n")
    for rel in ("Acorn_Woodpecker/1.jpg", "Acadian_Flycatcher/2.jpg"):
        write_image(base / "images" / rel)
    test = read_birdsnap(tmp_path, "test")
    assert test.classes == ["Acadian_Flycatcher", "Acorn_Woodpecker"]
    assert names(test) == ["1.jpg", "2.jpg"] and test.labels == [1, 0]
    data = tmp_path / "fgvc-aircraft-2013b" / "data"  # a plain list (read_lines): one name per line, whatever it holds
    write_text(data / "variants.txt", "A300\x1cB4\rBoeing\u2029717\r")
    write_text(data / "images_variant_test.txt", "1025794 Boeing\u2029717\r0062765 A300\x1cB4\r")
    fgvc = read_fgvc_aircraft(tmp_path, "test")
    assert fgvc.classes == ["A300\x1cB4", "Boeing\u2029717"] and fgvc.labels == [1, 0]


def test_voc2007_multilabel_targets_with_difficult(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2007"
    objects = {"000001": [("dog", 0), ("person", 1)], "000004": [("car", 1), ("car", 0), ("aeroplane", 1)],
               "000002": [("tvmonitor", 0)]}
    for id_, objs in objects.items():
        write_text(base / "Annotations" / f"{id_}.xml", voc_xml(id_, objs))
    write_text(base / "ImageSets" / "Main" / "test.txt", "000001\n000004\n")
    write_text(base / "ImageSets" / "Main" / "trainval.txt", "000002\n")
    test = read_voc2007(tmp_path, "test")
    assert len(test.classes) == 20 and test.classes[:3] == ["aeroplane", "bicycle", "bird"]
    expected = np.zeros((2, 20), dtype=np.int8)
    expected[0, test.classes.index("dog")] = 1
    expected[0, test.classes.index("person")] = -1  # difficult only
    expected[1, test.classes.index("car")] = 1  # one non-difficult car counts
    expected[1, test.classes.index("aeroplane")] = -1
    np.testing.assert_array_equal(test.targets, expected)
    assert test.labels == [test.classes.index("dog"), test.classes.index("car")]
    assert names(test) == ["000001.jpg", "000004.jpg"]
    np.testing.assert_array_equal(read_voc2007(base, "train").targets[0], np.eye(20, dtype=np.int8)[19])
    write_text(base / "Annotations" / "000002.xml", voc_xml("000002", [("unicorn", 0)]))
    with pytest.raises(DataError, match="unicorn"):
        read_voc2007(base, "train")


def test_kitti_distance_vtab_bins_and_tfds_drive_split(tmp_path):
    base = tmp_path
    drives = [f"2011_09_26_drive_{d:04d}_sync" for d in (1, 2, 5, 9, 11)]
    lines = [f"2011_09_26 {drives[i % 5]} {i:010d}" for i in range(10)]
    write_text(base / "devkit_object" / "mapping" / "train_mapping.txt", "\n".join(lines) + "\n")
    order = [3, 1, 10, 7, 2, 9, 4, 6, 5, 8]  # image i is line order[i] (1-based), as train_rand.txt says
    write_text(base / "devkit_object" / "mapping" / "train_rand.txt", ",".join(map(str, order)) + "\n")
    labels = {0: [kitti_line("Car", 5.0), "DontCare -1 -1 -10 1 1 2 2 -1 -1 -1 -1000 -1000 -1000 -10"],
              1: [kitti_line("Van", 15.0), kitti_line("Pedestrian", 3.0)], 2: [kitti_line("Truck", 30.0)],
              3: [kitti_line("Pedestrian", 4.0)], 4: [kitti_line("Car", 8.0), kitti_line("Car", 40.0)],
              5: [kitti_line("Car", 20.0)], 6: [kitti_line("Car", 20.5)], 7: [], 8: [kitti_line("Cyclist", 9.0)],
              9: [kitti_line("Tram", 2.0), kitti_line("Van", 999.5)]}
    for i, objs in labels.items():
        write_text(base / "training" / "label_2" / f"{i:06d}.txt", "".join(o + "\n" for o in objs))
    # TFDS's own formulation, on the global RandomState: the test drives, then (unused here) the validation drives
    drive_of = [lines[k - 1].split(" ")[1] for k in order]
    state = np.random.get_state()
    np.random.seed(123)
    test_drives = set(np.random.choice(sorted(set(drive_of)), 1, replace=False))
    np.random.set_state(state)
    expected_test = [i for i, d in enumerate(drive_of) if d in test_drives]
    test = read_kitti_distance(tmp_path, "test")
    train = read_kitti_distance(tmp_path, "train")
    assert names(test) == [f"{i:06d}.png" for i in expected_test] and len(expected_test) == 2
    assert sorted(names(test) + names(train)) == [f"{i:06d}.png" for i in range(10)]
    bins = {0: 0, 1: 1, 2: 2, 3: 3, 4: 0, 5: 1, 6: 2, 7: 3, 8: 3, 9: 3}  # <= 8, <= 20, <= 999 m, none
    assert test.labels == [bins[i] for i in expected_test]
    assert train.labels == [bins[int(n[:6])] for n in names(train)]
    assert len(test.classes) == 4


@pytest.mark.parametrize("broken, content, message", [
    ("training/label_2/000000.txt", kitti_line("Car", 5.0).rsplit(" ", 1)[0] + "\n",  # no rotation_y
     "kitti_distance: {file} has a line of 14 fields; KITTI object labels have 15 (type truncated occluded alpha "
     "bbox*4 dimensions*3 location*3 rotation_y)"),
    ("devkit_object/mapping/train_rand.txt", "1,3\n",  # train_mapping.txt has 2 lines
     "kitti_distance: {file} does not index the lines of train_mapping.txt ('DATE DRIVE FRAME' per line)"),
    ("training/label_2/000000.txt", kitti_line("Van", "far") + "\n",
     "kitti_distance: {file} has a Van at location z 'far'; expected metres, a number"),
], ids=["label-of-14-fields", "index-past-the-mapping", "depth-not-a-number"])
def test_kitti_distance_malformed_label_or_mapping(tmp_path, broken, content, message):
    mapping = tmp_path / "devkit_object" / "mapping"
    write_text(mapping / "train_mapping.txt", "2011_09_26 2011_09_26_drive_0001_sync 0000000000\n"
                                              "2011_09_26 2011_09_26_drive_0002_sync 0000000000\n")
    write_text(mapping / "train_rand.txt", "1,2\n")
    for i in range(2):
        write_text(tmp_path / "training" / "label_2" / f"{i:06d}.txt", kitti_line("Car", 5.0) + "\n")
    split = next(s for s, ids in kitti_split(mapping).items() if 0 in ids)  # the split holding image 0
    file = write_text(tmp_path / broken, content)
    assert one_line_error(DataError, read_kitti_distance, tmp_path, file, split) == message.format(file=file)


def test_imagenet_class_folders_and_flat_devkit(tmp_path):
    wnids = [f"n{i:08d}" for i in range(1000)]
    for w in wnids:
        (tmp_path / "folders" / "val" / w).mkdir(parents=True)
    write_image(tmp_path / "folders" / "val" / wnids[0] / "a.JPEG")
    write_image(tmp_path / "folders" / "val" / wnids[999] / "b.JPEG")
    folders = read_imagenet(tmp_path / "folders", "test")
    assert folders.classes == wnids and folders.labels == [0, 999]

    flat = tmp_path / "flat"
    for n in (1, 2, 3):
        write_image(flat / "val" / f"ILSVRC2012_val_{n:08d}.JPEG")
    # ILSVRC2012_IDs are not in wnid order here, and one synset is not a leaf: labels follow the sorted leaf wnids
    synsets = mat_structs(("ILSVRC2012_ID", "WNID", "num_children"),
                          [(1, "n02000000", 0), (2, "n01000000", 0), (3, "n03000000", 0), (1001, "n09999999", 3)])
    write_mat(flat / "ILSVRC2012_devkit_t12" / "data" / "meta.mat", synsets=synsets)
    write_text(flat / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt", "3\n1\n2\n")
    dataset = read_imagenet(flat, "test")
    assert dataset.classes == ["n01000000", "n02000000", "n03000000"]
    assert names(dataset) == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in (1, 2, 3)] and dataset.labels == [2, 1, 0]
    (flat / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    with pytest.raises(FileNotFoundError, match="meta.mat"):
        read_imagenet(flat, "test")


def test_imagenet_v2_sketch_a_r(tmp_path):
    for folder in ("0", "5", "999"):
        (tmp_path / "v2" / "imagenetv2-matched-frequency-format-val" / folder).mkdir(parents=True)
    write_image(tmp_path / "v2" / "imagenetv2-matched-frequency-format-val" / "5" / "x.jpeg")
    write_image(tmp_path / "v2" / "imagenetv2-matched-frequency-format-val" / "999" / "y.jpeg")
    v2 = read_imagenet_v2(tmp_path / "v2", "test")
    assert v2.labels == [5, 999] and len(v2.classes) == 1000

    subset = sorted(f"n{7 * i + 3:08d}" for i in range(200))
    for w in subset:
        (tmp_path / "imagenet-a" / w).mkdir(parents=True)
    write_image(tmp_path / "imagenet-a" / subset[1] / "1.jpg")
    write_image(tmp_path / "imagenet-a" / subset[199] / "2.jpg")
    a = read_imagenet_a(tmp_path, "test")
    assert a.classes == subset and a.wnids == subset and a.labels == [1, 199]
    (tmp_path / "imagenet-r" / subset[0]).mkdir(parents=True)
    with pytest.raises(DataError, match="1 class folders .* expected 200"):
        read_imagenet_r(tmp_path, "test")
    with pytest.raises(DataError, match="expected 1000"):
        read_imagenet_sketch(tmp_path / "imagenet-a", "test")
    with pytest.raises(ConfigError, match="test"):
        read_imagenet_a(tmp_path, "train")


def test_objectnet_keeps_the_classes_that_map_to_imagenet_in_folder_order(tmp_path):
    base = tmp_path / "objectnet-1.0"
    # The folder full_sized_towel holds "Bath towel": labels follow the sorted folders (the spec's label_names),
    # not the sorted label names, which would put it before "Bench".
    write_text(base / "mappings" / "folder_to_objectnet_label.json", json.dumps(
        {"alarm_clock": "Alarm clock", "air_freshener": "Air freshener", "full_sized_towel": "Bath towel",
         "bench": "Bench"}))
    write_text(base / "mappings" / "objectnet_to_imagenet_1k.json",
               json.dumps({"Bench": "park bench", "Bath towel": "bath towel",
                           "Alarm clock": "analog clock; digital clock"}))
    for rel in ("alarm_clock/1.png", "air_freshener/2.png", "full_sized_towel/3.png", "bench/4.png", "bench/5.png"):
        write_image(base / "images" / rel)
    dataset = read_objectnet(tmp_path, "test")
    assert dataset.classes == ["alarm_clock", "bench", "full_sized_towel"]
    assert names(dataset) == ["1.png", "4.png", "5.png", "3.png"] and dataset.labels == [0, 1, 1, 2]
    assert dataset.imagenet_indices is None  # without the ImageNet-side mapping files
    # imagenet_to_label_2012_v2: ImageNet 2012 labels by line; pytorch_to_imagenet_2012_id.json: index -> line
    write_text(base / "mappings" / "imagenet_to_label_2012_v2",
               "tench, Tinca tinca\npark bench\ndigital clock\nanalog clock\nbath towel\n")
    write_text(base / "mappings" / "pytorch_to_imagenet_2012_id.json",
               json.dumps({"0": 0, "703": 1, "530": 2, "409": 3, "434": 4}))
    assert read_objectnet(tmp_path, "test").imagenet_indices == [[409, 530], [703], [434]]


def test_ucf101_middle_frames_of_frame_folders(tmp_path, caplog):
    lists = tmp_path / "ucfTrainTestlist"
    write_text(lists / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n")
    write_text(lists / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\nApplyeyeMakeup/v_ApplyEyeMakeup_g01_c02.avi\n"
                                         "Archery/v_Archery_g02_c01.avi\n")
    write_text(lists / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n")
    clip = tmp_path / "UCF-101" / "Archery" / "v_Archery_g01_c01"
    for i, width in zip((1, 2, 10, 11), (5, 6, 7, 8)):  # frames of different widths: the middle one is known by
        write_image(clip / f"frame_{i}.jpg", Image.new("RGB", (width, 4)))  # its size; frame_10 comes after frame_2
    write_image(tmp_path / "UCF-101" / "ApplyeyeMakeup" / "v_ApplyEyeMakeup_g01_c02" / "f1.png",
                Image.new("RGB", (9, 4)))  # the folder's case differs from the list's
    test = read_ucf101(tmp_path, "test")
    assert test.classes == ["ApplyEyeMakeup", "Archery"] and test.labels == [1, 0]
    assert test.paths[0] == clip / "frame_10.jpg"  # frame 4 // 2 of 1, 2, 10, 11
    test.transform = lambda im: im.size
    assert test[0] == ((7, 4), 1) and test[1] == ((9, 4), 0)
    assert "1 of 3 clips are not on disk" in caplog.text
    with pytest.raises(FileNotFoundError, match="v_ApplyEyeMakeup_g08_c01.avi"):
        read_ucf101(tmp_path, "train")


@pytest.mark.parametrize("broken, content, message", [
    ("classInd.txt", "1 ApplyEyeMakeup\n3 Archery\n",
     "ucf101: {file} should number its classes 1, 2, ... in order; found '3 Archery'"),
    ("classInd.txt", "ApplyEyeMakeup\nArchery\n",
     "ucf101: {file} should number its classes 1, 2, ... in order; found 'ApplyEyeMakeup'"),
    ("testlist01.txt", "Archery/v_Archery_g01_c01.avi\nBowling/v_Bowling_g01_c01.avi\n",
     "ucf101: {file} names Bowling/v_Bowling_g01_c01.avi, whose class is not in classInd.txt"),
    ("testlist01.txt", "\n", "ucf101: {file} lists no clips"),
], ids=["class-3-after-1", "no-numbers", "unknown-class", "no-clips"])
def test_ucf101_malformed_split_files(tmp_path, broken, content, message):
    lists = tmp_path / "ucfTrainTestlist"
    write_text(lists / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n")
    write_text(lists / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\n")
    file = write_text(lists / broken, content)
    assert one_line_error(DataError, read_ucf101, tmp_path, file) == message.format(file=file)


def test_video_files_need_pyav(tmp_path, monkeypatch):
    write_text(tmp_path / "ucfTrainTestlist" / "classInd.txt", "1 Archery\n")
    write_text(tmp_path / "ucfTrainTestlist" / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\n")
    write_text(tmp_path / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi", "not decoded here")
    monkeypatch.setattr(video.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install 'clipworks\[benchmarks\]'"):
        read_ucf101(tmp_path, "test")


def test_kinetics700_val_csv_and_clip_names(tmp_path):
    base = tmp_path / "k700-2020"
    write_text(base / "annotations" / "val.csv", "label,youtube_id,time_start,time_end,split\n"
                                                 "zumba,abc123,12,22,val\nabseiling,XyZ_-9,0,10,val\n"
                                                 "abseiling,gone00,5,15,val\n")
    for i in range(3):
        write_image(base / "val" / "zumba" / "abc123_000012_000022" / f"{i:05d}.jpg", Image.new("RGB", (3 + i, 3)))
    write_image(base / "val" / "abseiling" / "XyZ_-9_000000_000010" / "00000.jpg")
    test = read_kinetics700(tmp_path, "test")
    assert test.classes == ["abseiling", "zumba"] and test.labels == [1, 0]
    assert test.paths[0].name == "00001.jpg" and test.paths[0].parent.name == "abc123_000012_000022"
    with pytest.raises(FileNotFoundError, match="train.csv"):
        read_kinetics700(tmp_path, "train")


@pytest.mark.parametrize("csv_text, message", [
    ("label,youtube_id,start,end\nzumba,abc123,12,22\n",
     "kinetics700: {file} should have the columns label,youtube_id,time_start,time_end,split"),
    ("label,youtube_id,time_start,time_end,split\nzumba,abc123,12,22,val\n\nzumba,def456,twelve,22,val\n",
     "kinetics700: {file} line 4 has time_start 'twelve' and time_end '22'; expected seconds, as numbers"),
    ("label,youtube_id,time_start,time_end,split\nzumba,abc123\n",
     "kinetics700: {file} line 2 has time_start None and time_end None; expected seconds, as numbers"),
], ids=["other-columns", "start-a-word", "row-without-times"])
def test_kinetics700_malformed_csv(tmp_path, csv_text, message):
    file = write_text(tmp_path / "kinetics700" / "annotations" / "val.csv", csv_text)
    (tmp_path / "kinetics700" / "val").mkdir()
    assert one_line_error(DataError, read_kinetics700, tmp_path, file) == message.format(file=file)


def test_kinetics700_video_file_middle_frame(tmp_path):
    pytest.importorskip("av")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 255, 255)]
    base = tmp_path / "kinetics700"
    write_text(base / "annotations" / "val.csv", "label,youtube_id,time_start,time_end,split\nzumba,abc123,12,22,val\n")
    clip = base / "val" / "zumba" / "abc123_000012_000022.mp4"  # the official downloader's name for the clip
    write_video(clip, [np.full((32, 32, 3), colour, dtype=np.uint8) for colour in colours])  # one colour a frame
    dataset = read_kinetics700(tmp_path, "test")
    assert dataset.paths == [clip] and dataset.labels == [0] and dataset.classes == ["zumba"]
    dataset.transform = lambda im: np.asarray(im.convert("RGB"), dtype=int)[16, 16]
    pixel, label = dataset[0]
    assert label == 0 and np.abs(pixel - colours[3]).max() < 12, pixel  # frame 7 // 2: yellow


def test_flickr30k_and_mscoco_karpathy_test_split(tmp_path):
    five = [f"caption {i}." for i in range(5)]
    write_text(tmp_path / "f" / "dataset_flickr30k.json", karpathy_json([
        {"filename": "1000092795.jpg", "split": "train", "sentences": sentences(*five)},
        {"filename": "1007129816.jpg", "split": "test", "sentences": sentences(*five)},
        {"filename": "1009434119.jpg", "split": "test", "sentences": sentences("A dog . ", *five[1:])}]))
    write_image(tmp_path / "f" / "flickr30k-images" / "1007129816.jpg")
    flickr = read_flickr30k(tmp_path / "f", "test")
    assert names(flickr) == ["1007129816.jpg", "1009434119.jpg"]
    assert flickr.paths[0].parent.name == "flickr30k-images"
    assert flickr.captions == [five, ["A dog ."] + five[1:]]

    write_text(tmp_path / "c" / "dataset_coco.json", karpathy_json([
        {"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "split": "test",
         "sentences": sentences(*five, "a sixth.")},
        {"filepath": "val2014", "filename": "COCO_val2014_000000522418.jpg", "split": "restval",
         "sentences": sentences(*five)}]))
    write_image(tmp_path / "c" / "val2014" / "COCO_val2014_000000391895.jpg")
    write_image(tmp_path / "c" / "val2014" / "COCO_val2014_000000522418.jpg")
    coco = read_mscoco(tmp_path / "c", "test")
    assert coco.paths == [tmp_path / "c" / "val2014" / "COCO_val2014_000000391895.jpg"]
    assert coco.captions == [five]  # the first five
    assert names(read_mscoco(tmp_path / "c", "train")) == ["COCO_val2014_000000522418.jpg"]
    write_text(tmp_path / "c" / "dataset_coco.json", json.dumps({"images": [{"filename": "x.jpg"}]}))
    with pytest.raises(DataError, match="Karpathy"):
        read_mscoco(tmp_path / "c", "test")


@pytest.mark.parametrize("name, expected", [
    ("cars", "cars_meta.mat"), ("fgvc_aircraft", "variants.txt"), ("pets", "test.txt"),
    ("caltech101", "101_ObjectCategories"), ("flowers102", "imagelabels.mat"), ("birdsnap", "species.txt"),
    ("voc2007", "test.txt"), ("kitti_distance", "mapping"), ("ucf101", "ucfTrainTestlist"),
    ("kinetics700", "val.csv"), ("imagenet", "ILSVRC2012_val_00000001.JPEG"), ("imagenet_v2", "/999"),
    ("imagenet_sketch", "n01440764"), ("imagenet_a", "n01440764"), ("imagenet_r", "n01440764"),
    ("objectnet", "folder_to_objectnet_label"),
    ("flickr30k", "dataset_flickr30k.json"), ("mscoco", "dataset_coco.json")])
def test_missing_dataset_is_one_line_naming_the_file(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as e:
        READERS[name](tmp_path, "test")
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("n_frames", [9, 10])
def test_video_file_middle_frame(tmp_path, n_frames):
    pytest.importorskip("av")
    levels = [20 * i + 20 for i in range(n_frames)]
    write_text(tmp_path / "ucfTrainTestlist" / "classInd.txt", "1 Archery\n")
    write_text(tmp_path / "ucfTrainTestlist" / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\n")
    write_video(tmp_path / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi",  # frame i uniformly grey at levels[i]
                [np.full((32, 32, 3), level, dtype=np.uint8) for level in levels])
    dataset = read_ucf101(tmp_path, "test")
    dataset.transform = lambda im: np.asarray(im.convert("L")).mean()
    level, label = dataset[0]
    assert label == 0 and abs(level - levels[n_frames // 2]) < 6  # as frame folders: frame len // 2
    assert dataset.scan() == [] and dataset.n_bad == 0
