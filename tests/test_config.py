"""Each config dataclass's defaults are the `Settings` defaults: a config built from
`Settings()` equals the one built with no arguments, so code and docs cannot drift apart."""

from __future__ import annotations

from shoplm.config import Settings
from shoplm.recommend.model import SIM_CACHE_ITEMS, UserModelConfig
from shoplm.recommend.sequences import RECENCY_DECAY
from shoplm.recommend.train import TrainConfig, model_config, train_config
from shoplm.search.cross_encoder import CrossConfig
from shoplm.search.fusion import Fusion
from shoplm.search.loss import LossConfig
from shoplm.search.train import SearchTrainConfig, search_train_config


def test_train_config_defaults_are_the_settings():
    assert train_config(Settings()) == TrainConfig()


def test_user_model_config_defaults_are_the_settings():
    assert model_config(Settings(), 4_385, 384) == UserModelConfig(n_items=4_385, text_dim=384)
    # the co-occurrence path is sparse: it stays on above the text-similarity cache's size
    assert model_config(Settings(), SIM_CACHE_ITEMS + 1, 384).cooc_path


def test_search_train_config_defaults_are_the_settings():
    assert search_train_config(Settings()) == SearchTrainConfig()


def test_cross_loss_and_fusion_defaults_are_the_settings():
    settings = Settings()
    assert CrossConfig() == CrossConfig(steps=settings.search_cross_steps, max_minutes=settings.search_cross_minutes,
                                        seed=settings.search_split_seed)
    assert LossConfig() == LossConfig(temperature=settings.search_temperature)
    assert Fusion(settings.hybrid_method, settings.hybrid_dense_weight) == Fusion("weighted", 0.5, settings.rrf_k)


def test_the_recency_decay_is_one_number():
    assert Settings().text_recency_decay == RECENCY_DECAY


def test_vector_index_defaults_are_the_settings():
    from shoplm.search.index import FaissIndex

    plain, configured = FaissIndex(384), FaissIndex.from_settings(384, Settings())
    assert (plain.hnsw_min_items, plain.ivf_min_items, plain.nprobe, plain.storage, plain.matrix) == (
        configured.hnsw_min_items, configured.ivf_min_items, configured.nprobe, configured.storage, configured.matrix)
