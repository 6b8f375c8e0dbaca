"""SASRec (Kang & McAuley, ICDM 2018) with ID embeddings only, trained with full softmax
cross-entropy over all items instead of sampled BCE: the variant Klenitskiy & Vasilev
(RecSys 2023) show to beat BERT4Rec. It is `shoplm.recommend.model.UserModel` with the text
adaptor, the text path and the history bias switched off, so the two differ only in what
the shoplm model adds. Unlike the shoplm model it scores with SASRec's own head, the dot
product of the state and the ID vectors (no cosine, no temperature), with plain
cross-entropy (no label smoothing) and dropout 0.5, as in the RecBole runs behind the
published Amazon tables. An item with no training events has an untrained ID vector, so
SASRec cannot recommend new items: the cold-items slice shows this.
"""

from __future__ import annotations

from shoplm.config import Settings
from shoplm.recommend.train import TrainConfig, TrainedUserModel, train_config
from shoplm.recommend.model import UserModelConfig


def sasrec(settings: Settings, device: str | None = None) -> TrainedUserModel:
    def model_config(n_items: int, text_dim: int) -> UserModelConfig:
        return UserModelConfig(
            n_items=n_items, text_dim=text_dim, use_text=False, use_id=True, encoder="transformer",
            dim=settings.sasrec_dim, n_layers=2, n_heads=2, max_len=settings.recommend_max_len,
            dropout=settings.sasrec_dropout, logits="dot",
            text_path=False, history_bias=False, cooc_path=False, new_item_neighbours=0,
            n_experts=8, temperature=0.07, text_lags=3,  # unread by an ID-only dot-product model; pinned as published
        )

    config: TrainConfig = train_config(settings, id_dropout=0.0, id_dropout_rare=0.0,
                                       label_smoothing=settings.sasrec_label_smoothing,
                                       patience=settings.sasrec_patience)
    return TrainedUserModel("sasrec", model_config, config, device=device)
