"""SimCLRv2's third step: a fine-tuned teacher labels unlabelled images with soft
targets, and a student (the same encoder or a smaller one) learns to match them."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.data import to_unit_range
from contrastive_tf.distribute import minimize, step_logs
from contrastive_tf.losses import check_temperature


@keras.saving.register_keras_serializable(package="contrastive_tf")
class Distiller(keras.Model):
    """Trains `student` on the teacher's temperature-scaled class probabilities.

    The loss is the cross-entropy -sum_c p_T(c) log p_S(c), with both distributions
    softmax(logits / temperature), as in SimCLRv2 (Chen et al. 2020b, eq. 2). Teacher and
    student see the same augmented view of each image; labels in the data are ignored.
    Calling the distiller runs the student.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        augmenter: keras.layers.Layer | None = None,
        temperature: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_temperature(temperature)
        self.student, self.teacher, self.augmenter, self.temperature = student, teacher, augmenter, temperature
        self.teacher.trainable = False
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.agreement = keras.metrics.Mean(name="agreement_with_teacher")

    def call(self, images, training=False):
        return self.student(images, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.agreement]

    def train_step(self, data):
        images = data[0] if isinstance(data, tuple) else data
        views = to_unit_range(images)
        if self.augmenter is not None:
            views = self.augmenter(views, training=True)
        teacher_logits = tf.cast(self.teacher(views, training=False), tf.float32)
        targets = tf.nn.softmax(teacher_logits / self.temperature)
        with tf.GradientTape() as tape:
            student_logits = tf.cast(self.student(views, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, student_logits / self.temperature))
        minimize(self.optimizer, tape, loss, self.student.trainable_variables)
        self.loss_tracker.update_state(loss)
        same = tf.equal(tf.argmax(student_logits, axis=1), tf.argmax(teacher_logits, axis=1))
        self.agreement.update_state(tf.cast(same, tf.float32))
        return step_logs(self.metrics)
